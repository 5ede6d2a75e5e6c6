"""Fixtures for the dashboard's tests: a finished run with fixed times (for snapshots and
screen tests), a scripted endpoint with latency (so LLM calls are in flight during live
tests), and helpers to wait for the app."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from personaloom.runner import run
from personaloom.testing.scripted import PersonaloomResponder, ScriptedEndpoint
from personaloom.testing.specs import corpus_files, story_spec, words_file, write_spec

BASE_TS = 1_795_600_800.0  # 2026-11-25 10:00:00 UTC: every time shown in a snapshot
CLOCK = BASE_TS + 600  # the snapshots' "now"

CORPUS = [
    "The harbour master posted new tide tables and a warning about the broken crane on pier 4.",
    "Our school garden grew forty pumpkins this year; the children weighed every single one.",
    "A review of the night bus: late, cold, but the driver sang old songs the whole way home.",
    "Minutes of the allotment society: the compost heap is on fire again, motion to buy a hose.",
]


@pytest.fixture
def latency() -> float:
    """Seconds the scripted endpoint sleeps per chat request (parametrize to change)."""
    return 0.0


@pytest.fixture
def endpoint(responder: PersonaloomResponder, latency: float) -> Iterator[ScriptedEndpoint]:
    """The shared conftest's endpoint, with a latency, so ``make_spec`` points at it."""
    with ScriptedEndpoint(responder, latency=latency) as server:
        yield server


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen in UTC, whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def spec_dict(base_url: str, **sections: Any) -> dict[str, Any]:
    """The shared story spec with three features, a joint target, no verbs and one draft at a
    time; keyword arguments replace top-level sections."""
    defaults: dict[str, Any] = {
        "traits": {
            "feature": {"values": ["dialogue", "moral", "twist"], "target": 2},
            "setting": {"values": ["forest", "sea"], "target": 3},
        },
        "joint": [{"traits": ["feature", "setting"], "target": 1}],
        "vocabulary": {"noun": "nouns.txt"},
        "critic": {"min_score": 3, "max_revisions": 0},
        "cache": {"enabled": False},
        "concurrency": 1,
    }
    return story_spec(base_url, name="stories", **{**defaults, **sections})


def fix_times(run_dir: Path) -> None:
    """Give every call and event of a run a fixed time (a quarter second apart, in their
    order), fixed durations and a fixed endpoint port, so screens showing them are the same
    on every machine."""
    db = sqlite3.connect(run_dir / "traces.sqlite")
    rows = [("calls", i, ts) for i, ts in db.execute("SELECT id, ts FROM calls")]
    rows += [("events", i, ts) for i, ts in db.execute("SELECT id, ts FROM events")]
    rows.sort(key=lambda row: (row[2], row[0] == "calls", row[1]))
    with db:
        for rank, (table, row_id, _) in enumerate(rows):
            db.execute(f"UPDATE {table} SET ts = ? WHERE id = ?", (BASE_TS + rank * 0.25, row_id))
        db.execute("UPDATE calls SET latency_ms = 100 + (id * 37) % 400")
        for row_id, params in db.execute("SELECT id, params FROM calls"):
            fixed = {**json.loads(params), "base_url": "http://127.0.0.1:8000/v1"}
            db.execute("UPDATE calls SET params = ? WHERE id = ?", (json.dumps(fixed), row_id))
        for row_id, data in db.execute("SELECT id, data FROM events WHERE kind = 'node_end'"):
            fixed = {**json.loads(data), "ms": 250.0}
            db.execute("UPDATE events SET data = ? WHERE id = ?", (json.dumps(fixed), row_id))
    db.close()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete run of the real engine against the scripted endpoint, with rejections
    (a critic that fails some ``moral`` stories) and fixed times. Read-only for tests."""
    root = tmp_path_factory.mktemp("finished")
    responder = PersonaloomResponder(accept_rate={"moral": 0.5}, omit_words_every=4)
    with ScriptedEndpoint(responder) as server:
        # The batch engine: the snapshots were drawn from its run (the screens read the run
        # directory, whichever engine wrote it; live runs in these tests use the default).
        spec = write_spec(
            root / "spec",
            spec_dict(server.base_url, critic={"min_score": 3, "max_revisions": 1}, engine="batch"),
            {
                **corpus_files(CORPUS),
                "nouns.txt": words_file(["dog", "ball", "boat", "hat", "cake"]),
            },
        )
        result = run(spec, out=root / "run", notice=lambda text: None)
    assert result.status == "complete" and result.report["rejected"] > 0
    fix_times(root / "run")
    return root / "run"


async def _wait_for(pilot, predicate: Callable[[], Any], timeout: float = 20.0) -> None:
    """Let the app run until ``predicate()`` holds (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await pilot.pause(0.05)


def _finished_and_read(app) -> bool:
    """The watched run is read: its files (a view) and all its events (folded)."""
    return (
        app.view is not None
        and app.state.status not in ("starting", "running")
        and not app._pending
        and not app._wake_posted.is_set()
    )


@pytest.fixture
def wait_for() -> Callable:
    """``await wait_for(pilot, predicate, timeout=20)``: run the app until it holds."""
    return _wait_for


@pytest.fixture
def finished_and_read() -> Callable:
    """``finished_and_read(app)``: a finished run is fully read (files and events)."""
    return _finished_and_read


@pytest.fixture
def clock() -> float:
    """The snapshots' fixed "now"."""
    return CLOCK
