"""The scripted endpoint, driven through the real openai and langchain-openai clients."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jinja2
import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, ConfigDict, create_model

from personaloom.testing.scripted import (
    EMBEDDING_DIM,
    GARBAGE,
    ChatRequest,
    PersonaloomResponder,
    ScriptedEndpoint,
    embed,
)

ROOT = Path(__file__).resolve().parents[2]


from personaloom.agents.models import PersonaList, RelatedPersonaList  # noqa: E402

Record = create_model(
    "Record",
    __config__=ConfigDict(extra="forbid"),
    title=(str, ...),
    story=(str, ...),
    rating=(int, ...),
)
CriticReview = create_model(
    "CriticReview",
    score=(int, ...),
    feedback=(str, ...),
    has_setting=(bool, ...),
    has_mood=(bool, ...),
)


def render(role: str, **variables: Any) -> list[dict[str, str]]:
    """The repository's prompt template as chat messages (what the agents send)."""
    source = (ROOT / "prompts" / f"{role}.md.j2").read_text(encoding="utf-8")
    body = source.split("\n---\n", 1)[1] if source.startswith("---\n") else source
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["data"] = lambda value: str(value).strip()
    parts = re.split(
        r"^\[(system|user|assistant)\]\s*$", env.from_string(body).render(**variables), flags=re.M
    )
    return [
        {"role": r, "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2], strict=True)
    ]


def miner(text: str, n: int = 4) -> list[dict[str, str]]:
    return render("persona_miner", text=text, relation="read", n=n)


def writer(words: list[str], traits: dict[str, str], persona: str = "A beekeeper.", **extra: Any):
    variables: dict[str, Any] = dict.fromkeys(["length", "previous", "feedback", "neighbour"])
    variables |= {"descriptions": {"setting": "where it happens"}, "examples": []}
    variables |= {"fields": ["title", "story", "rating"], "instruction": "Write a short story."}
    return render("writer", persona=persona, traits=traits, words=words, **variables | extra)


def critic(draft: str) -> list[dict[str, str]]:
    traits = {"setting": "forest", "mood": "hopeful"}
    names = {"setting": "has_setting", "mood": "has_mood"}
    return render(
        "critic", instruction="Write a short story.", draft=draft, traits=traits, field_names=names
    )


def json_schema_format(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": schema["title"], "schema": schema}}


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# The `endpoint` fixture (a ScriptedEndpoint around a fresh PersonaloomResponder) is in conftest.
def openai_client(server: ScriptedEndpoint, timeout: float = 5) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=timeout
    )


@pytest.fixture
def client(endpoint: ScriptedEndpoint) -> openai.OpenAI:
    return openai_client(endpoint)


@pytest.fixture
def chat(endpoint: ScriptedEndpoint) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=endpoint.base_url, api_key="sk-test", model="m", max_retries=0, timeout=5
    )


def ask(client: openai.OpenAI, messages: list[dict[str, str]], **params: Any) -> Any:
    return client.chat.completions.create(model="m", messages=messages, **params)  # type: ignore[arg-type]


def content(client: openai.OpenAI, messages: list[dict[str, str]], **params: Any) -> str:
    return ask(client, messages, **params).choices[0].message.content


TEXT = "Coral reefs off the Algarve coast are bleaching as the water warms every summer."


# The four schema transports
def test_json_schema_transport(client: openai.OpenAI, chat: ChatOpenAI) -> None:
    reply = ask(client, miner(TEXT), response_format=json_schema_format(PersonaList))
    completion = reply.choices[0]
    personas = PersonaList.model_validate_json(completion.message.content).personas
    assert len(personas) == 4 and len(set(personas)) == 4
    assert completion.finish_reason == "stop" and reply.usage.total_tokens > 0

    parsed = chat.with_structured_output(PersonaList, method="json_schema").invoke(miner(TEXT, n=2))
    assert isinstance(parsed, PersonaList) and len(parsed.personas) == 2


def test_json_object_with_schema_transport(endpoint: ScriptedEndpoint, chat: ChatOpenAI) -> None:
    fmt = {"type": "json_object", "schema": PersonaList.model_json_schema()}
    message = chat.invoke(miner(TEXT, n=3), extra_body={"response_format": fmt})
    assert len(PersonaList.model_validate_json(message.content).personas) == 3
    assert endpoint.requests[-1]["body"]["response_format"]["type"] == "json_object"


def test_tools_transport(client: openai.OpenAI, chat: ChatOpenAI) -> None:
    persona = "A 40-something marine biologist in Lisbon who worries about coral bleaching."
    messages = render("persona_relater", persona=persona, n=3)
    parsed = chat.with_structured_output(RelatedPersonaList, method="function_calling").invoke(
        messages
    )
    assert isinstance(parsed, RelatedPersonaList) and len(parsed.personas) == 3
    assert all(": " in p and "marine biologist" in p for p in parsed.personas)

    schema = RelatedPersonaList.model_json_schema()
    tool = {"type": "function", "function": {"name": "RelatedPersonaList", "parameters": schema}}
    choice = {"type": "function", "function": {"name": "RelatedPersonaList"}}
    reply = ask(client, messages, tools=[tool], tool_choice=choice).choices[0]
    assert reply.finish_reason == "tool_calls" and not reply.message.content
    call = reply.message.tool_calls[0]
    assert call.function.name == "RelatedPersonaList"
    assert len(json.loads(call.function.arguments)["personas"]) == 3


def test_prompt_transport_finds_the_schema_in_the_text(
    endpoint: ScriptedEndpoint, chat: ChatOpenAI
) -> None:
    schema = json.dumps(PersonaList.model_json_schema())
    messages = [
        *miner(TEXT, n=2),
        {"role": "system", "content": f"Reply matching this JSON schema:\n{schema}"},
    ]
    message = chat.invoke(messages)
    assert len(PersonaList.model_validate_json(message.content).personas) == 2
    assert endpoint.responder.calls["PersonaList"] == 1  # type: ignore[attr-defined]


def test_unsupported_transport_is_rejected_like_llama_cpp() -> None:
    with ScriptedEndpoint(unsupported={"json_schema"}) as server:
        client = openai_client(server)
        with pytest.raises(openai.BadRequestError):
            ask(client, miner(TEXT), response_format=json_schema_format(PersonaList))
        fmt = {"type": "json_object", "schema": PersonaList.model_json_schema()}
        assert ask(client, miner(TEXT), response_format=fmt).choices[0].message.content


# Personas
def test_personas_depend_on_the_text(client: openai.OpenAI) -> None:
    fmt = json_schema_format(PersonaList)

    def personas(text: str) -> list[str]:
        content = ask(client, miner(text), response_format=fmt).choices[0].message.content
        return json.loads(content)["personas"]

    first = personas(TEXT)
    assert first == personas(TEXT)  # deterministic
    assert set(first).isdisjoint(personas("A recipe for sourdough bread with a long cold proof."))
    assert all(re.match(r"An? .+ in \w+ who .+\.", p) for p in first)


# Writer and critic
WORDS = ["lantern", "zebra", "gallop"]
TRAITS = {"setting": "forest", "mood": "hopeful"}


def write(client: openai.OpenAI, messages: list[dict[str, str]], seed: int = 1) -> dict[str, Any]:
    reply = content(client, messages, response_format=json_schema_format(Record), seed=seed)
    return Record.model_validate_json(reply).model_dump()


def test_writer_uses_required_words_and_traits(client: openai.OpenAI) -> None:
    record = write(client, writer(WORDS, TRAITS))
    story = record["story"].lower()
    assert all(word in story for word in [*WORDS, *TRAITS.values()])
    assert "where it happens" not in story  # the trait's description is not its value
    assert 3 <= len(record["title"].split()) <= 6 and isinstance(record["rating"], int)
    assert 3 <= len(re.findall(r"\.", record["story"])) <= 6
    assert write(client, writer(WORDS, TRAITS)) == record  # same request, same reply
    assert write(client, writer(WORDS, TRAITS), seed=2)["story"] != record["story"]


def test_writer_retry_after_a_near_duplicate_is_different(client: openai.OpenAI) -> None:
    first = write(client, writer(WORDS, TRAITS))["story"]
    retry = write(client, writer(WORDS, TRAITS, neighbour=first))["story"]
    assert all(word in retry.lower() for word in WORDS)
    assert cosine(embed(first), embed(retry)) < 0.8


def test_writer_duplicate_every_provokes_near_duplicates() -> None:
    with ScriptedEndpoint(PersonaloomResponder(duplicate_every=2)) as server:
        client = openai_client(server)
        stories = [
            write(client, writer(words, TRAITS, persona=f"Person {i}."))["story"]
            for i, words in enumerate(
                [WORDS, ["apple", "kite"], ["river", "moss"], ["quartz", "hum"]]
            )
        ]
    assert "apple" in stories[1] and "quartz" in stories[3]
    assert cosine(embed(stories[1]), embed(stories[3])) > 0.9
    assert cosine(embed(stories[0]), embed(stories[2])) < 0.8


def test_writer_omit_words_every_leaves_the_words_out() -> None:
    with ScriptedEndpoint(PersonaloomResponder(omit_words_every=2)) as server:
        client = openai_client(server)
        stories = [write(client, writer(WORDS, TRAITS), seed=s)["story"] for s in range(3)]
    assert [all(w in s for w in WORDS) for s in stories] == [True, False, True]
    assert "forest" in stories[1]  # traits are still there


def review(client: openai.OpenAI, draft: str) -> dict[str, Any]:
    reply = content(client, critic(draft), response_format=json_schema_format(CriticReview))
    return CriticReview.model_validate_json(reply).model_dump()


def test_critic_confirms_traits_by_default(client: openai.OpenAI) -> None:
    verdict = review(client, "A hopeful walk in the forest.")
    assert verdict["score"] == 4 and verdict["has_setting"] and verdict["has_mood"]


def test_critic_accept_rate_per_value() -> None:
    responder = PersonaloomResponder(accept_rate={"forest": 0.0}, score=2)
    with ScriptedEndpoint(responder) as server:
        client = openai_client(server)
        verdict = review(client, "A hopeful walk in the forest.")
        assert (verdict["score"], verdict["has_setting"], verdict["has_mood"]) == (2, False, True)
        assert "forest" in verdict["feedback"]
    half = PersonaloomResponder(accept_rate=0.5)

    def request(draft: str) -> ChatRequest:
        text = critic(draft)[1]["content"]
        return ChatRequest("CriticReview", CriticReview.model_json_schema(), [], text, None, {})

    drafts = [f"Draft number {i}." for i in range(40)]
    verdicts = [half(request(draft))["has_mood"] for draft in drafts]
    assert 5 < sum(verdicts) < 35  # a coin flip per draft, but the same one every time
    assert verdicts == [half(request(draft))["has_mood"] for draft in drafts]


def test_unknown_title_and_custom_responder(
    client: openai.OpenAI, endpoint: ScriptedEndpoint
) -> None:
    class Other(BaseModel):
        x: int

    hello = [{"role": "user", "content": "hi"}]
    assert content(client, hello, response_format=json_schema_format(Other)) == "{}"
    seen: list[ChatRequest] = []

    def responder(request: ChatRequest) -> str:
        seen.append(request)
        return "plain words"

    with ScriptedEndpoint(responder) as server:
        other = openai_client(server)
        assert content(other, hello, seed=7) == "plain words"
    assert seen[0].seed == 7 and seen[0].title is None and seen[0].text == "hi"


# Embeddings
def test_embeddings_are_normalised_and_meaningful(
    client: openai.OpenAI, endpoint: ScriptedEndpoint
) -> None:
    texts = [
        "the old lighthouse keeper watched the storm over the harbour",
        "the old lighthouse keeper watched a storm over the harbour tonight",
        "quarterly tax filing deadlines for small bakeries",
    ]
    for fmt in (openai.omit, "float"):  # omitted: base64 on the wire, decoded by the client
        data = client.embeddings.create(model="e", input=texts, encoding_format=fmt).data  # type: ignore[arg-type]
        vectors = [d.embedding for d in data]
        assert all(len(v) == EMBEDDING_DIM for v in vectors)
        assert all(
            math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4) for v in vectors
        )
        assert cosine(vectors[0], vectors[1]) > 0.8 > 0.3 > cosine(vectors[0], vectors[2])
    assert endpoint.requests[0]["body"]["encoding_format"] == "base64"
    one = client.embeddings.create(model="e", input=texts[0]).data
    assert len(one) == 1 and endpoint.embedding_calls == 3

    lc = OpenAIEmbeddings(
        base_url=endpoint.base_url, api_key="sk-test", model="e", check_embedding_ctx_length=False
    )
    assert len(lc.embed_query(texts[0])) == EMBEDDING_DIM


def test_embeddings_are_the_same_in_another_process() -> None:
    code = "from personaloom.testing.scripted import embed; print(embed('stable across runs')[:8])"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == pytest.approx(embed("stable across runs")[:8])


# Faults
def test_status_faults(client: openai.OpenAI, endpoint: ScriptedEndpoint, chat: ChatOpenAI) -> None:
    endpoint.inject("status", status=429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, miner(TEXT))
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body["type"] == "rate_limit_error"  # type: ignore[index]

    endpoint.inject("status", status=503, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat.invoke(miner(TEXT))
    assert chat.invoke(miner(TEXT)).content  # the queue is drained
    assert endpoint.chat_calls == 4


def test_the_client_honours_retry_after(endpoint: ScriptedEndpoint) -> None:
    endpoint.inject("status", status=429, retry_after=0.3)
    client = openai.OpenAI(base_url=endpoint.base_url, api_key="sk-test", max_retries=1, timeout=5)
    started = time.monotonic()
    assert content(client, miner(TEXT))
    assert time.monotonic() - started >= 0.3 and endpoint.chat_calls == 2


def test_garbage_and_empty_faults(client: openai.OpenAI, endpoint: ScriptedEndpoint) -> None:
    endpoint.inject("garbage")
    endpoint.inject("empty")
    fmt = json_schema_format(PersonaList)
    assert content(client, miner(TEXT), response_format=fmt) == GARBAGE
    assert content(client, miner(TEXT), response_format=fmt) == ""
    assert json.loads(content(client, miner(TEXT), response_format=fmt))["personas"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(GARBAGE)  # garbage really is not JSON


def test_timeout_fault_fires_the_client_timeout(endpoint: ScriptedEndpoint) -> None:
    endpoint.inject("timeout", delay=3)
    client = openai_client(endpoint, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask(client, miner(TEXT))
    assert time.monotonic() - started < 2
    assert content(client, miner(TEXT))  # the next request is normal

    endpoint.inject("timeout", delay=3)
    chat = ChatOpenAI(
        base_url=endpoint.base_url, api_key="sk-test", model="m", max_retries=0, timeout=0.5
    )
    with pytest.raises(openai.APITimeoutError):
        chat.invoke(miner(TEXT))


# Server behaviour
async def test_latency_overlaps_across_concurrent_requests() -> None:
    with ScriptedEndpoint(latency=0.4) as server:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=5
        )
        started = time.monotonic()
        calls = (client.chat.completions.create(model="m", messages=miner(TEXT)) for _ in range(4))  # type: ignore[arg-type]
        replies = await asyncio.gather(*calls)
        elapsed = time.monotonic() - started
        await client.close()
    assert len(replies) == 4 and 0.4 <= elapsed < 1.2


def test_request_log_counts_and_models(client: openai.OpenAI, endpoint: ScriptedEndpoint) -> None:
    assert [m.id for m in client.models.list()] == ["scripted"]
    ask(client, miner(TEXT))
    client.embeddings.create(model="e", input="x")
    assert (endpoint.chat_calls, endpoint.embedding_calls) == (1, 1)
    chat_request = next(r for r in endpoint.requests if r["path"].endswith("/chat/completions"))
    assert chat_request["body"]["model"] == "m"
    assert "authorization" in {name.lower() for name in chat_request["headers"]}
    endpoint.reset_counts()
    assert (endpoint.chat_calls, endpoint.embedding_calls, endpoint.requests) == (0, 0, [])
    with pytest.raises(ValueError):
        endpoint.inject("meteor")
    with pytest.raises(openai.BadRequestError):  # streaming is not scripted: say so
        ask(client, miner(TEXT), stream=True)


def test_a_stopped_endpoint_is_down() -> None:
    server = ScriptedEndpoint().start()
    client = openai_client(server)
    assert content(client, miner(TEXT))
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        ask(client, miner(TEXT))
