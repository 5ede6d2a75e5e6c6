"""Graph events are queued and written in batches by a background thread: readers of the
same store see them at once, other readers shortly after, and nothing is lost at close or at
interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from personaloom.traces import EVENT_FLUSH_SECONDS, TraceStore


def test_events_are_seen_by_this_store_at_once(tmp_path: Path) -> None:
    traces = TraceStore(tmp_path / "traces.sqlite")
    for i in range(5):
        traces.record_event("node_start", {"node": "write"}, sample_id=f"s{i}")
    assert [e["sample_id"] for e in traces.events()] == [f"s{i}" for i in range(5)]
    traces.close()


def test_other_readers_see_events_shortly_and_after_close(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite"
    traces = TraceStore(path)
    traces.record_event("batch", {"drafts": 2})
    reader = TraceStore(path, readonly=True)
    deadline = time.monotonic() + 10 * EVENT_FLUSH_SECONDS + 2
    while not reader.events() and time.monotonic() < deadline:
        time.sleep(EVENT_FLUSH_SECONDS / 5)
    assert [e["kind"] for e in reader.events()] == ["batch"]
    traces.record_event("run_finished", {"status": "complete"})
    traces.close()
    assert [e["kind"] for e in reader.events()] == ["batch", "run_finished"]


def test_queued_events_are_written_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite"
    code = (
        "from personaloom.traces import TraceStore\n"
        f"traces = TraceStore({str(path)!r})\n"
        "for i in range(100):\n"
        "    traces.record_event('node_end', {'i': i})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert len(TraceStore(path, readonly=True).events()) == 100
