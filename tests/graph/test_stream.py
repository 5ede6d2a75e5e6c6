"""The streaming engine (graphs/stream.py): no batch barrier, and the same run whatever the
timing: what is planned, sent and written depends on the replies only."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from personaloom.runner import run
from personaloom.store import read_jsonl
from personaloom.testing.scripted import (
    PersonaloomResponder,
    ScriptedEndpoint,
    lognormal_latency,
    parse_chat,
)
from personaloom.traces import TraceStore

TRAITS = {
    "feature": {"values": ["dialogue", "moral"], "target": 4},
    "setting": {"values": ["forest", "sea"], "target": 4},
}
PERSONAS = {"per_text": 3, "relate_depth": 1, "relate_per_persona": 2, "max_uses": 4}


def _written(run_dir: Path) -> tuple[list, list]:
    """Everything a run wrote that timing could change, in file order."""
    dataset = [
        (s["id"], s["output"], s["persona"]["id"], s["traits"], s["words"])
        for s in read_jsonl(run_dir / "dataset.jsonl")
    ]
    rejected = [(r["id"], r["reason"], r["draft"]) for r in read_jsonl(run_dir / "rejected.jsonl")]
    return dataset, rejected


def test_timing_changes_nothing(
    make_spec, endpoint: ScriptedEndpoint, responder: PersonaloomResponder, tmp_path: Path
) -> None:
    """Two runs with fresh caches against an endpoint whose latencies are drawn anew (long
    tail: drafts finish in a different order each time) write the same files; a third run
    of the same spec is answered by the reply cache alone."""
    responder.accept_rate = 0.7  # critic verdicts fixed per draft: revisions and rejections
    written = []
    for attempt in range(2):
        endpoint.latency = lognormal_latency(0.01, 0.08, seed=attempt)
        spec = make_spec(
            traits=TRAITS,
            personas=PERSONAS,
            concurrency=4,
            budget={"max_calls": 600},
            cache={"dir": str(tmp_path / f"cache{attempt}")},
        )
        result = run(spec, out=tmp_path / f"run{attempt}", notice=lambda text: None)
        assert result.status == "complete"
        written.append(_written(result.run_dir))
    assert written[0] == written[1]
    dataset, rejected = written[0]
    assert len(dataset) >= 8 and len({s[0] for s in dataset} | {r[0] for r in rejected}) == len(
        dataset
    ) + len(rejected)

    calls = endpoint.chat_calls
    again = run(spec, out=tmp_path / "again", notice=lambda text: None)
    assert endpoint.chat_calls == calls and again.report["calls"] == 0
    assert _written(again.run_dir) == written[1]


@pytest.mark.parametrize("concurrency", [8, 32])
def test_overshoot_is_bounded_by_the_drafts_in_flight(
    make_spec, responder: PersonaloomResponder, tmp_path: Path, concurrency: int
) -> None:
    """Some drafts are turned down, so the planner keeps drafting while others are in flight:
    each value ends at its target, or above it by no more than the drafts in flight."""
    responder.accept_rate = {"forest": 0.5}
    traits = {"setting": {"values": ["forest", "sea"], "target": 6}}
    spec = make_spec(
        traits=traits,
        personas={**PERSONAS, "max_uses": 20},
        concurrency=concurrency,
        critic={"min_score": 3, "max_revisions": 0},
        budget={"max_calls": 2000},
    )
    result = run(spec, out=tmp_path / "run", notice=lambda text: None)
    assert result.status == "complete"
    counts = Counter(s["traits"]["setting"] for s in read_jsonl(result.run_dir / "dataset.jsonl"))
    assert min(counts.values()) >= 6
    assert sum(n - 6 for n in counts.values()) <= concurrency
    assert result.report["rejected"] > 0  # the forest drafts the critic turned down


def test_a_slow_draft_does_not_hold_the_others_back(
    make_spec, endpoint: ScriptedEndpoint, tmp_path: Path
) -> None:
    """The fifth writer request takes 3 s, the others 10 ms. While it is out, new drafts keep
    starting; the batch engine would start none until it is back (checked on both)."""
    arrivals: list[float] = []

    def latency(body: dict) -> float:
        if parse_chat(body).title != "Record":
            return 0.01
        arrivals.append(time.monotonic())
        return 3.0 if len(arrivals) == 5 else 0.01

    endpoint.latency = latency
    traits = {"setting": {"values": ["forest", "sea"], "target": 8}}
    started = {}
    for engine in ("batch", "stream"):
        arrivals.clear()
        spec = make_spec(traits=traits, personas=PERSONAS, concurrency=4, engine=engine)
        result = run(spec, out=tmp_path / engine, notice=lambda text: None)
        assert result.status == "complete"
        # First writer requests of drafts that began well after the slow one and before
        # it was back: wall-clock times of the run's own trace (a call's ts is its end).
        slow = arrivals[4] - time.monotonic() + time.time()
        first: dict[str, float] = {}
        for call in TraceStore(result.run_dir / "traces.sqlite").calls("agent = 'writer'"):
            first.setdefault(call["sample_id"], call["ts"])
        started[engine] = [s for s, ts in first.items() if slow + 0.05 < ts < slow + 2.9]
    assert started["batch"] == []
    assert len(started["stream"]) >= 4, started


def test_review_mode_asks_before_writing(make_spec, tmp_path: Path) -> None:
    """The streaming engine asks the reviewer (no interrupt) and keeps what it approves."""
    from personaloom.control import RunControl

    asked: list[str] = []

    async def reviewer(samples):
        asked.extend(s["id"] for s in samples)
        return {s["id"]: s["id"] != asked[0] for s in samples}  # turn the first one down

    result = run(
        make_spec(),
        out=tmp_path / "run",
        control=RunControl(review=True),
        reviewer=reviewer,
        notice=lambda text: None,
    )
    assert result.status == "complete"
    rejected = {r["id"]: r["reason"] for r in read_jsonl(result.run_dir / "rejected.jsonl")}
    assert rejected[asked[0]] == "human_rejected"
    accepted = {s["id"] for s in read_jsonl(result.run_dir / "dataset.jsonl")}
    assert accepted and accepted <= set(asked)


def test_copies_in_the_window_are_caught_at_commit(
    make_spec, responder: PersonaloomResponder, tmp_path: Path
) -> None:
    """A draft's novelty check cannot see the samples of the drafts in its window; its commit
    compares it with those (and only those, since its check saw the rest): copies written by
    drafts in flight together are rejected then, and no accepted pair is a near-duplicate."""
    import numpy as np

    from personaloom.vectors import SAMPLES, NoveltyIndex, discard_clients

    responder.duplicate_every = 3  # every third writer request is one fixed text
    spec = make_spec(traits=TRAITS, personas=PERSONAS, concurrency=8, critic={"max_revisions": 0})
    result = run(spec, out=tmp_path / "run", notice=lambda text: None)
    assert result.status == "complete"
    traces = TraceStore(result.run_dir / "traces.sqlite")
    checked = {e["sample_id"]: e["data"] for e in traces.events("novelty")}
    copies = [
        r for r in read_jsonl(result.run_dir / "rejected.jsonl") if r["reason"] == "near_duplicate"
    ]
    at_commit = [r for r in copies if not checked[r["id"]]["duplicate"]]
    assert at_commit, "some copy must pass its own check (its twin in flight) and fail at commit"
    samples = list(read_jsonl(result.run_dir / "dataset.jsonl"))
    seqs = {s["id"]: i for i, s in enumerate(samples)}
    assert all(r["novelty"]["neighbour_id"] in seqs for r in at_commit)
    index = NoveltyIndex(result.run_dir / "chroma")
    try:
        vectors = index.vectors(SAMPLES)
    finally:
        discard_clients(result.run_dir / "chroma")
    matrix = np.asarray([vectors[s["id"]] for s in samples], dtype=float)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    similarity = matrix @ matrix.T
    np.fill_diagonal(similarity, -1.0)
    threshold = next(iter(checked.values()))["threshold"]
    assert similarity.max() < threshold, "a near-duplicate pair was accepted"
