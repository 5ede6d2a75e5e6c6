"""The embedded defaults for real: SmolLM2 behind llama-cpp-python's server, and local MiniLM.

One server serves the module; the lifecycle tests start their own, since stopping or orphaning
a server is what they check. Model output is never compared to fixed text, only to its schema.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from openai import OpenAI

from personaloom.local.embed import LocalEmbedder
from personaloom.local.server import MODEL_ALIAS, LocalModelServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
    },
    "required": ["name", "age"],
}
PERSON_PROMPT = "Reply with a JSON object for a person named Ada who is 36 years old."


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


def _assert_person(text: str) -> None:
    # strict=False: llama.cpp's JSON grammar lets raw control characters into strings.
    person = json.loads(text, strict=False)
    assert set(person) >= {"name", "age"}
    assert isinstance(person["name"], str)
    assert isinstance(person["age"], int)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModelServer]:
    log = tmp_path_factory.mktemp("local-model") / "server.log"
    with LocalModelServer(log_path=log) as srv:
        yield srv


@pytest.mark.integration
def test_json_object_with_schema_constrains_the_reply(server: LocalModelServer) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    client = OpenAI(base_url=server.base_url, api_key="local", timeout=120, max_retries=0)
    reply = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": PERSON_PROMPT}],
        response_format={"type": "json_object", "schema": PERSON_SCHEMA},  # type: ignore[typeddict-unknown-key]
        max_tokens=60,
        temperature=0,
    )
    assert reply.model == MODEL_ALIAS
    _assert_person(reply.choices[0].message.content or "")


def local_chat(server: LocalModelServer, **settings: object) -> ChatOpenAI:
    return ChatOpenAI(
        model=server.model,
        base_url=server.base_url,
        api_key="local",
        timeout=120,
        max_retries=0,
        **settings,
    )


@pytest.mark.integration
def test_langchain_bind_passes_response_format_through(server: LocalModelServer) -> None:
    """`.bind(response_format=dict)` reaches the server unchanged (bind_tools and
    with_structured_output would rewrite it to json_schema, which this server rejects)."""
    llm = local_chat(server, max_tokens=60, temperature=0)
    response_format = {"type": "json_object", "schema": PERSON_SCHEMA}
    bound = llm.bind(response_format=response_format)
    messages = [HumanMessage(PERSON_PROMPT)]
    payload = llm._get_request_payload(messages, **bound.kwargs)
    assert payload["response_format"] == response_format
    _assert_person(str(bound.invoke(messages).content))


@pytest.mark.integration
def test_max_tokens_from_langchain_is_honoured(server: LocalModelServer) -> None:
    """langchain-openai sends `max_completion_tokens`, which the stock server ignores."""
    llm = local_chat(server, max_tokens=5)
    reply = llm.invoke([HumanMessage("Write a long story about a lighthouse keeper.")])
    assert reply.response_metadata["finish_reason"] == "length"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == 5


@pytest.mark.integration
def test_stop_leaves_no_process(tmp_path: Path) -> None:
    srv = LocalModelServer(log_path=tmp_path / "server.log", niceness=5).start()
    pid = srv.pid
    assert pid is not None and _alive(pid)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + 5)  # the dashboard's setting
    srv.stop()
    srv.stop()  # idempotent
    assert srv.pid is None
    assert not _alive(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


@pytest.mark.integration
def test_sigkilled_parent_takes_its_server_down(tmp_path: Path) -> None:
    # The log goes to tmp_path: a SIGKILLed parent cannot delete its temporary log.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from personaloom.local.server import LocalModelServer\n"
        "server = LocalModelServer(log_path=Path(sys.argv[1])).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "server.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    server_pid = None
    try:
        line = parent.stdout.readline() if parent.stdout else b""
        assert line.strip().isdigit(), (line, parent.stderr.read() if parent.stderr else b"")
        server_pid = int(line)
        assert _alive(server_pid)
        assert MODEL_ALIAS.encode() in Path(f"/proc/{server_pid}/cmdline").read_bytes()
        parent.kill()
        parent.wait(timeout=10)
        assert _wait_gone(server_pid, timeout=10), "the server outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if server_pid is not None and _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


@pytest.mark.integration
def test_local_embedder_gives_normalised_vectors_with_meaningful_distances() -> None:
    embedder = LocalEmbedder()
    assert embedder.dimensions == 384
    nurse, doctor, market = embedder.embed(
        [
            "A nurse looks after patients on the hospital ward.",
            "A doctor treats sick people at the clinic.",
            "The stock market fell sharply on Tuesday.",
        ]
    )
    for vector in (nurse, doctor, market):
        assert len(vector) == 384
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, abs_tol=1e-4)

    def cosine(a: list[float], b: list[float]) -> float:
        return math.fsum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(nurse, doctor) > cosine(nurse, market) + 0.2
    assert embedder.embed([]) == []
