"""Live controls (what the TUI drives): pause, graceful stop then resume, review through a
LangGraph interrupt, and changing the bars for drafts still to come."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from personaloom.control import RunControl
from personaloom.runner import EXIT_INTERRUPTED, arun, run
from personaloom.store import read_jsonl
from personaloom.traces import TraceStore


def test_stop_finishes_the_batch_then_resume_completes(make_spec, tmp_path: Path) -> None:
    control = RunControl()
    seen: list[str] = []

    def stop_after_first_accept(event: dict) -> None:
        seen.append(event["event"])
        if event["event"] == "sample_accepted":
            control.stop()

    first = run(
        make_spec(), out=tmp_path / "run", control=control, listeners=[stop_after_first_accept]
    )
    assert first.status == "stopped" and first.exit_code == EXIT_INTERRUPTED
    kept = read_jsonl(first.run_dir / "dataset.jsonl")
    assert kept
    assert "batch" not in seen[seen.index("sample_accepted") :]  # no round started after
    # No draft started after the stop; the drafts started before it were all committed.
    # (Not "at most concurrency 2": a draft that finished before the one ahead of it waits
    # for its turn to commit while the next one runs.)
    traces = TraceStore(first.run_dir / "traces.sqlite")
    stop = traces.events("sample_accepted")[0]["id"]
    started = [e["sample_id"] for e in traces.events("assignment")]
    assert all(e["id"] < stop for e in traces.events("assignment"))
    written = read_jsonl(first.run_dir / "rejected.jsonl") + kept
    assert sorted(r["id"] for r in written) == sorted(started)
    traces.close()
    assert first.report["status"] == "stopped"

    second = run(resume=first.run_dir)
    assert second.status == "complete"
    final = read_jsonl(first.run_dir / "dataset.jsonl")
    ids = [s["id"] for s in final]
    assert len(ids) == len(set(ids)) and {s["id"] for s in kept} <= set(ids)


def test_pause_holds_new_batches_until_resumed(make_spec, tmp_path: Path) -> None:
    control = RunControl()
    batches: list[float] = []

    def on_event(event: dict) -> None:
        if event["event"] == "batch":
            batches.append(event["ts"])
            if len(batches) == 1:
                control.pause()
                threading.Timer(1.0, control.resume).start()

    result = run(make_spec(), out=tmp_path / "run", control=control, listeners=[on_event])
    assert result.status == "complete" and len(batches) >= 2
    assert batches[1] - batches[0] >= 0.9  # the second batch waited for resume()


def test_review_rejects_what_the_reviewer_turns_down(make_spec, tmp_path: Path) -> None:
    asked: list[list[str]] = []

    async def reviewer(samples: list[dict]) -> dict[str, bool]:
        ids = [s["id"] for s in samples]
        asked.append(ids)
        assert all(s["output"]["story"] and s["persona"] and s["traits"] for s in samples)
        return {ids[0]: False} if len(asked) == 1 else {}

    control = RunControl(review=True)
    result = asyncio.run(
        arun(make_spec(), out=tmp_path / "run", control=control, reviewer=reviewer)
    )
    assert result.status == "complete" and asked
    turned_down = asked[0][0]
    accepted = {s["id"] for s in read_jsonl(result.run_dir / "dataset.jsonl")}
    rejected = {r["id"]: r for r in read_jsonl(result.run_dir / "rejected.jsonl")}
    assert turned_down not in accepted
    assert rejected[turned_down]["reason"] == "human_rejected"
    assert result.report["rejections"]["human_rejected"] == 1
    assert {i for batch in asked for i in batch} - {turned_down} <= accepted


def test_min_score_override_applies_to_drafts_to_come(make_spec, responder, tmp_path) -> None:
    responder.score = 3
    control = RunControl(min_score=5)  # stricter than the spec's 3: nothing passes
    spec = make_spec(budget={"max_calls": 40}, critic={"min_score": 3, "max_revisions": 0})
    result = run(spec, out=tmp_path / "run", control=control)
    assert result.report["accepted"] == 0
    assert result.report["rejections"].get("low_quality", 0) > 0


def test_resume_after_lost_checkpoints_drafts_under_new_ids(make_spec, tmp_path: Path) -> None:
    """A kill can land after a round's commit reached dataset.jsonl but before LangGraph saved
    that round's checkpoints (they are written asynchronously). The resumed run must not plan
    draft ids that are already written: their drafts would be dropped as duplicates and every
    call spent on them wasted. Losing the checkpoint file entirely is the extreme case."""
    from personaloom.traces import TraceStore

    control = RunControl()

    def stop_after_first_accept(event: dict) -> None:
        if event["event"] == "sample_accepted":
            control.stop()

    first = run(
        make_spec(), out=tmp_path / "run", control=control, listeners=[stop_after_first_accept]
    )
    assert first.status == "stopped"
    written = {r["id"] for r in read_jsonl(first.run_dir / "dataset.jsonl")}
    written |= {r["id"] for r in read_jsonl(first.run_dir / "rejected.jsonl")}
    before = max(c["id"] for c in TraceStore(first.run_dir / "traces.sqlite").calls())
    for name in ("checkpoints.sqlite", "checkpoints.sqlite-wal", "checkpoints.sqlite-shm"):
        (first.run_dir / name).unlink(missing_ok=True)

    second = run(resume=first.run_dir)
    assert second.status == "complete"
    calls = TraceStore(first.run_dir / "traces.sqlite").calls("id > ?", [before])
    drafted_after = {c["sample_id"] for c in calls if c["agent"] in ("writer", "critic")}
    assert drafted_after and not drafted_after & written
    ids = [s["id"] for s in read_jsonl(first.run_dir / "dataset.jsonl")]
    assert len(ids) == len(set(ids))


def test_resume_does_not_redraft_samples_already_written(make_spec, tmp_path: Path) -> None:
    """A kill can land after a round's commit reached dataset.jsonl while the last checkpoint
    still has that round's drafts pending: the resumed graph runs those drafts again. A draft
    whose outcome is already written must cost nothing: re-checked against a store that now
    holds it, it found itself as its own near-duplicate and was revised (new calls)."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from personaloom.graphs import build_graph
    from personaloom.runner import THREAD, checkpoint_serde
    from personaloom.traces import TraceStore

    first = run(make_spec(engine="batch"), out=tmp_path / "run")
    assert first.status == "complete"
    written = {r["id"] for r in read_jsonl(first.run_dir / "dataset.jsonl")}
    written |= {r["id"] for r in read_jsonl(first.run_dir / "rejected.jsonl")}
    path = first.run_dir / "checkpoints.sqlite"
    with sqlite3.connect(path, check_same_thread=False) as conn:
        app = build_graph().compile(checkpointer=SqliteSaver(conn, serde=checkpoint_serde()))
        # The last checkpoint with a batch planned and its drafts not yet run.
        target = next(s for s in app.get_state_history(THREAD) if set(s.next) == {"draft"})
        batch = {t.draft_id for t in target.values["batch"]}
        assert batch & written, "the rewound round has samples on disk"
        checkpoint_id = target.config["configurable"]["checkpoint_id"]
        conn.execute("DELETE FROM checkpoints WHERE checkpoint_id > ?", (checkpoint_id,))
        conn.execute("DELETE FROM writes WHERE checkpoint_id >= ?", (checkpoint_id,))
    before = max(c["id"] for c in TraceStore(first.run_dir / "traces.sqlite").calls())

    second = run(resume=first.run_dir)
    assert second.status == "complete"
    calls = TraceStore(first.run_dir / "traces.sqlite").calls("id > ?", [before])
    assert [c["sample_id"] for c in calls if c["sample_id"] in batch] == []
    ids = [s["id"] for s in read_jsonl(first.run_dir / "dataset.jsonl")]
    assert len(ids) == len(set(ids)) and set(ids) <= written
