"""The dashboard's plain-Python parts: the event fold, the read-only run views, filters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personaloom.store import load_run
from personaloom.tui.screens.bars import parse_bars
from personaloom.tui.screens.samples import SampleFilter, sample_rows
from personaloom.tui.state import RunState, format_eta
from personaloom.tui.view import EventTail, ViewLoader, source_text
from personaloom.tui.widgets.coverage import cell_status


def _event(kind: str, ts: float, **data) -> dict:
    return {"event": kind, "ts": ts, **data}


def test_fold_tracks_agents_feed_and_pace() -> None:
    state = RunState()
    state.apply(_event("run_started", 100.0, run_dir="runs/x"))
    state.apply(_event("batch", 100.5, round=0, drafts=2, remaining=4))
    state.apply(_event("node_start", 101.0, node="write", sample_id="s00000-000"))
    state.apply(_event("node_start", 101.2, node="write", sample_id="s00000-001"))
    writer = next(line for line in state.agents() if line.agent == "writer")
    assert writer.busy == ("s00000-000", "s00000-001") and writer.since == 101.0
    state.apply(_event("node_end", 103.0, node="write", sample_id="s00000-000", ms=2000.0))
    state.apply(_event("verdict", 104.0, sample_id="s00000-000", verdict="accept", score=4))
    state.apply(_event("sample_accepted", 130.0, sample_id="s00000-000", remaining=3, score=4))
    state.apply(
        _event(
            "sample_rejected",
            131.0,
            sample_id="s00000-001",
            reason="missing_words",
            details="Use these words: boat.",
            traits={"feature": "moral"},
        )
    )
    agents = {line.agent: line for line in state.agents()}
    assert agents["writer"].busy == ("s00000-001",)
    assert agents["critic"].last == "s00000-000 accept (score 4)"
    assert agents["planner"].last == "round 0: 2 drafts assigned"
    assert [item.kind for item in state.feed] == ["accepted", "rejected"]
    assert state.feed[-1].detail == "missing_words: Use these words: boat."
    assert state.feed_since(1) == [state.feed[-1]] and state.feed_since(2) == []
    pace = state.pace(now=160.0)  # one accepted in the last minute of a 60 s session
    assert pace.per_minute == pytest.approx(1.0) and pace.remaining == 3
    assert pace.eta_seconds == pytest.approx(180.0)


def test_finished_run_pace_covers_the_session_and_clears_work() -> None:
    state = RunState()
    state.apply(_event("run_started", 0.0))
    state.apply(_event("node_start", 1.0, node="critique", sample_id="s1"))
    for ts in (30.0, 60.0):
        state.apply(_event("sample_accepted", ts, sample_id=f"s{ts}", remaining=0))
    state.apply(_event("run_finished", 120.0, status="complete"))
    assert state.status == "complete"
    assert all(not line.busy for line in state.agents())  # nothing left "busy" forever
    pace = state.pace(now=10_000.0)
    assert pace.per_minute == pytest.approx(1.0) and pace.remaining == 0


def test_unknown_events_are_ignored_and_resumes_start_a_new_session() -> None:
    state = RunState()
    state.apply(_event("something_new", 1.0, x=1))
    state.apply(_event("run_started", 2.0))
    state.apply(_event("sample_accepted", 3.0, sample_id="a", remaining=1))
    state.apply(_event("run_started", 50.0))
    assert state.session_accepted == 0 and state.events_seen == 4


def test_workers_events_give_the_workers_line_and_a_feed_item_for_a_loss() -> None:
    from personaloom.tui.widgets.counters import Counters

    state = RunState()
    state.apply({"event": "workers_started", "ts": 1.0, "workers": 2, "pids": [11, 12]})
    assert [w["pid"] for w in state.workers] == [11, 12]
    lost = state.apply(
        {
            "event": "worker_lost",
            "ts": 2.0,
            "worker": 0,
            "pid": 11,
            "sample_id": "s00001-000",
            "error": "ActorDiedError: killed",
        }
    )
    assert lost is not None and lost.kind == "aborted" and "pid 11" in lost.detail
    stats = [
        {"worker": 0, "pid": 13, "alive": True, "in_flight": 2, "samples_per_s": 1.5, "lost": 1},
        {"worker": 1, "pid": 12, "alive": True, "in_flight": 1, "samples_per_s": 1.25, "lost": 0},
    ]
    state.apply({"event": "workers", "ts": 3.0, "workers": stats})
    line = Counters._workers(state.workers).plain
    assert line == "#0 2 in flight 1.50/s lost 1   #1 1 in flight 1.25/s"


def test_format_eta() -> None:
    assert [format_eta(s) for s in (5, 59, 61, 3599, 3600, 5400)] == [
        "5 s",
        "59 s",
        "1 min",
        "1 h 00 min",
        "1 h 00 min",
        "1 h 30 min",
    ]


def test_view_loader_reads_a_run_and_tolerates_a_torn_last_line(finished_run, tmp_path) -> None:
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("run.json", "spec.yaml", "dataset.jsonl", "rejected.jsonl", "personas.jsonl"):
        (copy / name).write_bytes((finished_run / name).read_bytes())
    (copy / "traces.sqlite").write_bytes((finished_run / "traces.sqlite").read_bytes())
    with (copy / "dataset.jsonl").open("a") as handle:
        handle.write('{"id": "s99999-000", "output": {"ti')  # a writer cut off mid-line
    loader = ViewLoader(copy)
    view = loader.load()
    loader.close()
    report = json.loads((finished_run / "report.json").read_text())
    assert view.report["accepted"] == report["accepted"]
    assert view.report["coverage"] == report["coverage"]
    assert view.report["calls"] == report["calls"]
    assert (copy / "dataset.jsonl").read_text().endswith('{"ti')  # not repaired by a reader


def test_event_tail_reads_only_what_is_new(finished_run) -> None:
    tail = EventTail(finished_run)
    first = tail.read(limit=5)
    rest = tail.read()
    assert len(first) == 5 and rest and tail.read() == []
    assert first[0]["event"] == "run_started" and rest[-1]["event"] == "run_finished"
    assert all("ts" in e for e in first + rest)
    tail.close()


def test_source_text_of_files_and_jsonl_lines(finished_run, tmp_path: Path) -> None:
    spec, _ = load_run(finished_run)
    assert source_text(spec, "corpus/00.txt").startswith("The harbour master")
    assert source_text(spec, "corpus/missing.txt") is None
    folder = tmp_path / "jsonl"
    folder.mkdir()
    (folder / "texts.jsonl").write_text('{"body": "first"}\n\n{"body": "third line"}\n')
    jsonl_spec = spec.model_copy(
        update={
            "base_dir": folder,
            "corpus": [
                spec.corpus[0].model_copy(
                    update={"path": None, "jsonl": "texts.jsonl", "field": "body"}
                )
            ],
        }
    )
    assert source_text(jsonl_spec, "texts.jsonl:3") == "third line"


def test_sample_filters(finished_run) -> None:
    view = ViewLoader(finished_run).load()
    everything = sample_rows(view, SampleFilter())
    assert len(everything) == view.report["accepted"] + view.report["rejected"]
    assert [r["id"] for r, _ in everything] == sorted(r["id"] for r, _ in everything)
    rejected = sample_rows(view, SampleFilter(status="rejected"))
    assert rejected and not any(ok for _, ok in rejected)
    reason = rejected[0][0]["reason"]
    assert sample_rows(view, SampleFilter(reason=reason))
    moral = sample_rows(view, SampleFilter(trait="feature=moral"))
    assert moral and all(r["traits"]["feature"] == "moral" for r, _ in moral)
    some_id = everything[0][0]["id"]
    assert [r["id"] for r, _ in sample_rows(view, SampleFilter(text=some_id))] == [some_id]


def test_parse_bars() -> None:
    assert parse_bars("0.85", "4", 0.9, 3) == (0.85, 4)
    assert parse_bars("0.9", "3", 0.9, 3) == (None, None)  # the spec's values: no override
    assert parse_bars("", "", 0.9, 3) == (None, None)
    for novelty, score in (("1.5", "3"), ("abc", "3"), ("0.8", "6"), ("0.8", "2.5")):
        with pytest.raises(ValueError):
            parse_bars(novelty, score, 0.9, 3)


def test_cell_status() -> None:
    assert cell_status({"accepted": 3, "target": 3, "attempts": 9}) == "met"
    assert cell_status({"accepted": 0, "target": 3, "attempts": 0}) == "waiting"
    assert cell_status({"accepted": 1, "target": 3, "attempts": 2}) == "filling"
    stuck = {"accepted": 0, "target": 3, "attempts": 6, "acceptance_rate": 0.0}
    assert cell_status(stuck) == "stuck"
    assert cell_status({"accepted": 1, "target": 3, "attempts": 2}, stuck=True) == "stuck"
    reported = {"accepted": 1, "target": 3, "attempts": 9, "status": "given_up"}
    assert cell_status(reported) == "given up"
    assert cell_status({"accepted": 0, "target": 0, "attempts": 0}) == "no target"


def test_the_folds_handlers_are_for_event_kinds_that_exist() -> None:
    from personaloom.events import EVENT_KINDS
    from personaloom.tui.state import HANDLERS

    assert set(HANDLERS) <= EVENT_KINDS, set(HANDLERS) - EVENT_KINDS
    assert {"run_started", "sample_accepted", "workers"} <= set(HANDLERS)
