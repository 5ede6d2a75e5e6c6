"""The persona gate in a run, through the scripted endpoint: a miner and a relater that mix the
embedded model's real bad replies (issue 14) into good personas. Bad ones never write a
sample, are recorded with their reason, are counted in the report, and are never related
from; ``personas.check: off`` lets them in, ``personas.check: llm`` adds the checker's call."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from personaloom.report import regenerate
from personaloom.runner import run
from personaloom.store import read_jsonl
from personaloom.testing.scripted import ChatRequest, PersonaloomResponder, parse_chat
from personaloom.traces import TraceStore

SOURCE_COPY = "<the source text>"
# What SmolLM2-135M answered to "Who is likely to read this?" about package descriptions.
BAD_MINED = {
    "A 60-year-old retired bus driver who grows tomatoes and worries about his pension.": (
        "prompt_example"
    ),
    "19am 9:54m 7:30am": "not_prose",
    "(f,g,h); (i): (j: (k:": "not_prose",
    "] { name: { age: 60, job: { role:": "not_prose",
    SOURCE_COPY: "source_copy",
}
BAD_RELATED = "neighbour: A 70-year-old widow who feeds the street's stray cats."
# Reads as a sentence and copies nothing: what the rules let through and an LLM check does not.
PRODUCT = "A friendly software package that keeps terminal sessions alive for its many users."


class EchoingResponder(PersonaloomResponder):
    """Each miner reply holds every bad reply (the source text itself for SOURCE_COPY),
    PRODUCT and one good persona; each relater reply starts with a copy of the relater's
    prompt example."""

    def _mine(self, request: ChatRequest) -> dict[str, Any]:
        source = request.text.split("<text>")[1].split("</text>")[0].strip()
        bad = [source if text == SOURCE_COPY else text for text in BAD_MINED]
        return {"personas": [*bad, PRODUCT, *super()._mine(request)["personas"][:1]]}

    def _relate(self, request: ChatRequest) -> dict[str, Any]:
        return {"personas": [BAD_RELATED, *super()._relate(request)["personas"]]}


@pytest.fixture
def responder() -> EchoingResponder:
    return EchoingResponder(implausible=("software package",))


def requests_titled(endpoint, title: str) -> list[ChatRequest]:
    chats = [r for r in endpoint.requests if r["path"].endswith("/chat/completions")]
    return [c for c in (parse_chat(r["body"]) for r in chats) if c.title == title]


def persona_slots(request: ChatRequest) -> list[str]:
    return [part.split("</persona>")[0].strip() for part in request.text.split("<persona>")[1:]]


def personas_spec(make_spec, check: str) -> Path:
    return make_spec(
        personas={
            "per_text": len(BAD_MINED) + 2,  # the bad replies, PRODUCT and a good persona
            "relate_depth": 1,
            "relate_per_persona": 2,
            "max_uses": 1,
            "check": check,
        }
    )


def test_bad_personas_are_turned_away_with_their_reason(make_spec, endpoint, tmp_path) -> None:
    result = run(personas_spec(make_spec, "rules"), out=tmp_path / "run")
    assert result.status == "complete"
    run_dir = result.run_dir
    pool = read_jsonl(run_dir / "personas.jsonl")
    rejected = read_jsonl(run_dir / "rejected_personas.jsonl")
    texts = {row["persona"] for row in rejected}
    assert len(texts & set(BAD_MINED)) == 4  # every literal bad reply came up and was kept out
    for row in rejected:
        if row["persona"] == PRODUCT:  # let in by the rules once, then a duplicate of itself
            assert row["reason"] == "near_duplicate" and row["neighbour_id"] and row["similarity"]
        elif row["persona"] in BAD_MINED:
            assert row["reason"] == BAD_MINED[row["persona"]], row
        elif row["depth"] == 0:  # the source text handed back
            assert row["reason"] == "source_copy" and "its source text" in row["details"]
        else:
            assert row["persona"] == BAD_RELATED.split(": ", 1)[1]
            assert row["reason"] == "prompt_example" and row["parent_id"]
    assert {r["reason"] for r in rejected} >= {"not_prose", "prompt_example", "source_copy"}
    # Nothing turned away is in the pool, wrote a sample, or was related from.
    assert not texts & {p["persona"] for p in pool} - {PRODUCT}
    assert PRODUCT in {p["persona"] for p in pool}  # what only the LLM check can catch
    for sample in read_jsonl(run_dir / "dataset.jsonl"):
        assert sample["persona"]["text"] not in texts
    related_from = [
        s for r in requests_titled(endpoint, "RelatedPersonaList") for s in persona_slots(r)
    ]
    assert related_from and set(related_from) <= {p["persona"] for p in pool}
    # Counted in the report and in the events.
    section = result.report["persona_pool"]
    assert section["rejected_by_reason"] == dict(
        sorted(Counter(r["reason"] for r in rejected).items())
    )
    assert section["pool"] == len(pool) and section["rejected"] == len(rejected)
    assert section["calls"]["persona_miner"] > 0 and "persona_checker" not in section["calls"]
    usable = {s["persona"]["id"] for s in read_jsonl(run_dir / "dataset.jsonl")}
    assert section["wrote_accepted"] == len(usable)
    assert section["calls_per_usable_persona"] == round(
        sum(section["calls"].values()) / len(usable), 3
    )
    assert section["diversity"]["vendi_score"] > 1 and section["diversity"]["distinct_2"] > 0
    assert section["diversity"]["embeddings"] == len(pool)
    markdown = (run_dir / "report.md").read_text()
    assert "## Personas" in markdown and "| prompt_example |" in markdown
    events = TraceStore(run_dir / "traces.sqlite", readonly=True).events("persona_rejected")
    assert sorted(e["data"]["persona_id"] for e in events) == sorted(r["id"] for r in rejected)
    # `personaloom report` rebuilds the same section from the run directory alone.
    regenerated = json.loads(regenerate(run_dir).read_text())
    assert regenerated["persona_pool"] == section


def test_with_the_gate_off_the_bad_personas_get_in(make_spec, tmp_path) -> None:
    result = run(personas_spec(make_spec, "off"), out=tmp_path / "run")
    pool = {p["persona"] for p in read_jsonl(result.run_dir / "personas.jsonl")}
    assert pool & set(BAD_MINED)
    rejected = read_jsonl(result.run_dir / "rejected_personas.jsonl")
    assert {r["reason"] for r in rejected} <= {"near_duplicate"}


def test_the_llm_check_turns_away_what_it_finds_implausible(make_spec, endpoint, tmp_path) -> None:
    result = run(personas_spec(make_spec, "llm"), out=tmp_path / "run")
    assert result.status == "complete"
    rejected = read_jsonl(result.run_dir / "rejected_personas.jsonl")
    implausible = [r for r in rejected if r["reason"] == "implausible"]
    assert implausible and {r["persona"] for r in implausible} == {PRODUCT}
    pool = read_jsonl(result.run_dir / "personas.jsonl")
    assert PRODUCT not in {p["persona"] for p in pool}
    checks = requests_titled(endpoint, "PersonaCheck")
    assert checks and result.report["persona_pool"]["calls"]["persona_checker"] == len(checks)
    # The rules run first: nothing they turn away costs the checker anything.
    judged = [s for r in checks for s in persona_slots(r)]
    assert not set(judged) & set(BAD_MINED)
    assert len(judged) == len(pool) + len(implausible) + sum(
        r["reason"] == "near_duplicate" for r in rejected
    )
