"""End-to-end runs of the compiled graph through the real langchain-openai client against
the scripted endpoint: targets, near-duplicates, bounded revisions, cache, budgets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from personaloom.runner import EXIT_BUDGET, run
from personaloom.store import read_jsonl
from personaloom.testing.scripted import PersonaloomResponder
from personaloom.traces import TraceStore


def rows(run_dir: Path, name: str) -> list[dict]:
    return read_jsonl(run_dir / name)


def test_run_meets_every_target(make_spec, tmp_path: Path) -> None:
    personas = {"per_text": 2, "relate_depth": 1, "relate_per_persona": 2, "max_uses": 1}
    result = run(make_spec(personas=personas), out=tmp_path / "run")
    assert result.status == "complete" and result.exit_code == 0
    dataset = rows(result.run_dir, "dataset.jsonl")
    counts = Counter((t, v) for s in dataset for t, v in s["traits"].items())
    for trait, value in [
        ("feature", "dialogue"),
        ("feature", "moral"),
        ("setting", "forest"),
        ("setting", "sea"),
    ]:
        assert counts[(trait, value)] >= 2
        assert result.report["coverage"][trait][value]["accepted"] == counts[(trait, value)]
    # Overshoot is bounded by the drafts in flight (concurrency 2).
    assert len(dataset) <= 4 + 2
    personas = {p["id"]: p for p in rows(result.run_dir, "personas.jsonl")}
    for sample in dataset:
        assert sample["output"]["story"] and sample["output"]["title"]
        assert sample["persona"]["text"] == personas[sample["persona"]["id"]]["persona"]
        assert sample["lineage"]["source_text_id"].startswith("corpus/")
        assert set(sample["words"]) == {"noun", "verb"}
        assert sample["critic"]["score"] >= 3
    related = [p for p in personas.values() if p["parent_id"]]
    assert related and all(p["parent_id"] in personas and p["relation"] for p in related)
    for name in ("spec.yaml", "traces.sqlite", "checkpoints.sqlite", "chroma", "report.json"):
        assert (result.run_dir / name).exists(), name
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["accepted"] == len(dataset) and report["calls"] > 0


def test_every_call_is_traced(make_spec, tmp_path: Path) -> None:
    result = run(make_spec(), out=tmp_path / "run")
    traces = TraceStore(result.run_dir / "traces.sqlite")
    calls = traces.calls()
    assert {c["agent"] for c in calls} == {"persona_miner", "persona_relater", "writer", "critic"}
    writer = next(c for c in calls if c["agent"] == "writer")
    assert writer["sample_id"] and writer["persona_id"] and writer["template"] == "writer.md.j2"
    assert len(writer["template_hash"]) == 12 and writer["latency_ms"] > 0
    assert writer["prompt_tokens"] and writer["attempt"] == 1 and writer["cache_hit"] == 0
    assert json.loads(writer["parsed"])["story"]
    messages = traces.messages(writer)
    assert messages[0]["role"] == "system" and messages[1]["content"].startswith(
        "Write a short story."
    )
    assert traces.usage().calls == result.report["calls"] == len(calls)
    # Graph events, linked by sample id: assignment, node timings, verdicts, novelty decisions.
    sample = writer["sample_id"]
    kinds = [e["kind"] for e in traces.events(sample_id=sample)]
    for kind in ("assignment", "node_start", "node_end", "verdict", "novelty"):
        assert kind in kinds, kind
    verdict = traces.events("verdict", sample_id=sample)[-1]["data"]
    assert verdict["verdict"] in ("accept", "revise", "reject") and "score" in verdict
    ends = traces.events("node_end")
    assert {e["data"]["node"] for e in ends} >= {"stream", "write", "critique", "check_novelty"}


def test_near_duplicate_is_rejected_and_the_writer_is_told(
    tmp_path: Path, make_spec, responder: PersonaloomResponder
) -> None:
    responder.duplicate_every = 2  # every second draft is one fixed text
    result = run(make_spec(critic={"min_score": 3, "max_revisions": 0}), out=tmp_path / "run0")
    rejected = rows(result.run_dir, "rejected.jsonl")
    dupes = [r for r in rejected if r["reason"] == "near_duplicate"]
    assert dupes, "the fixed text must be caught after its first acceptance"
    assert all(r["novelty"]["similarity"] >= 0.9 and r["novelty"]["neighbour_id"] for r in dupes)
    assert result.status == "complete"

    # With a revision allowed, the writer gets the neighbour and writes something else. (The
    # streaming engine's drafts see samples from 2 x concurrency drafts back: a copy of a
    # sample written by a draft in the window is caught at its commit and rejected.)
    responder.calls.clear()
    traits = {
        "feature": {"values": ["dialogue", "moral"], "target": 4},
        "setting": {"values": ["forest", "sea"], "target": 4},
    }
    result = run(make_spec(name="revise", traits=traits, concurrency=1), out=tmp_path / "run1")
    traces = TraceStore(result.run_dir / "traces.sqlite")
    told = [
        c
        for c in traces.calls("agent = 'writer'")
        if "too similar to this existing one" in traces.messages(c)[-1]["content"]
    ]
    assert told
    assert result.status == "complete"


def test_revise_loop_is_bounded(tmp_path: Path, make_spec, responder: PersonaloomResponder) -> None:
    responder.omit_words_every = 1  # the writer never uses the required words
    result = run(
        make_spec(critic={"min_score": 3, "max_revisions": 2}, budget={"max_calls": 40}),
        out=tmp_path / "run",
    )
    assert result.status == "budget" and result.exit_code == EXIT_BUDGET
    assert result.stop_reason == "max_calls"
    rejected = rows(result.run_dir, "rejected.jsonl")
    assert rejected and {r["reason"] for r in rejected} == {"missing_words"}
    assert all(r["revisions"] == 2 for r in rejected)
    traces = TraceStore(result.run_dir / "traces.sqlite")
    per_draft = Counter(c["sample_id"] for c in traces.calls("agent = 'writer'"))
    assert max(per_draft.values()) <= 3  # one draft plus at most max_revisions rewrites
    assert not rows(result.run_dir, "dataset.jsonl")
    assert result.report["calls"] <= 40


def test_second_run_is_served_from_the_cache(tmp_path: Path, make_spec, endpoint) -> None:
    spec = make_spec()
    first = run(spec, out=tmp_path / "first")
    chat, embeddings = endpoint.chat_calls, endpoint.embedding_calls
    assert chat > 0
    second = run(spec, out=tmp_path / "second")
    assert endpoint.chat_calls == chat and endpoint.embedding_calls == embeddings
    assert second.report["calls"] == 0 and second.report["cache_hits"] > 0
    outputs = lambda r: [s["output"] for s in rows(r.run_dir, "dataset.jsonl")]  # noqa: E731
    assert outputs(first) == outputs(second)


def test_critic_rejects_unconfirmed_traits(
    tmp_path: Path, make_spec, responder: PersonaloomResponder
) -> None:
    """A value the critic never confirms is never counted. It is set aside, then given up,
    without stranding the values it was paired with; the run ends with the account."""
    responder.accept_rate = {"moral": 0.0}
    result = run(
        make_spec(
            critic={"min_score": 3, "max_revisions": 0},
            budget={"max_calls": 500},
            stagnation={"patience": 4},
        ),
        out=tmp_path / "run",
    )
    assert result.status == "stalled" and result.exit_code == 4
    assert result.stop_reason.startswith("targets given up: feature=moral (0/2 after")
    assert "mostly trait_mismatch" in result.stop_reason and "setting" not in result.stop_reason
    coverage = result.report["coverage"]
    assert coverage["feature"]["moral"]["accepted"] == 0
    assert coverage["feature"]["dialogue"]["accepted"] >= 2
    assert all(coverage["setting"][v]["accepted"] >= 2 for v in ("forest", "sea"))
    # Never retried forever: two strikes of `patience` failures, plus the drafts in flight.
    assert coverage["feature"]["moral"]["attempts"] <= 2 * 4 + 2
    assert result.report["rejections"]["trait_mismatch"] >= 1
    assert {"trait": "feature", "value": "moral", "target": 2, "accepted": 0} in result.report[
        "unmet"
    ]


@pytest.mark.parametrize("strategy", ["json_schema", "json_object", "tools", "prompt"])
def test_each_structured_output_strategy_runs(
    tmp_path: Path, make_spec, endpoint, strategy: str
) -> None:
    models = {"default": {"base_url": endpoint.base_url, "structured_output": strategy}}
    result = run(make_spec(models=models), out=tmp_path / "run")
    assert result.status == "complete"
    body = next(r["body"] for r in endpoint.requests if r["path"].endswith("/chat/completions"))
    if strategy in ("json_schema", "json_object"):
        assert body["response_format"]["type"] == strategy
    elif strategy == "tools":
        assert body["tools"][0]["function"]["name"]
    else:
        assert "response_format" not in body and "tools" not in body
