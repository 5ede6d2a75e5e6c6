"""Run events: what happened, for the progress bar, ``--events`` JSON lines and the trace store."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, get_args

from personaloom.traces import TraceStore

Listener = Callable[[dict[str, Any]], None]

# Every kind of event, in one place: mypy checks each ``emit`` and ``record`` against it, and
# the dashboard's fold (tui/state.py) maps kinds to handlers from it. docs/cli.md#events
# describes the fields of each.
EventKind = Literal[
    # the run
    "run_started",
    "run_finished",
    "pool_loaded",
    "avoid_loaded",
    # personas
    "personas",
    "persona_added",
    "persona_rejected",
    "persona_check_failed",
    "persona_mining_failed",
    "persona_relating_failed",
    # drafts and their outcomes
    "batch",
    "assignment",
    "sample_accepted",
    "sample_rejected",
    "draft_aborted",
    "stagnant",
    "review_requested",
    "review_done",
    # fine-grained (``record``): node timings and the checks' verdicts
    "node_start",
    "node_end",
    "verdict",
    "novelty",
    "contamination",
    # Ray workers (--workers)
    "workers_started",
    "workers",
    "worker_lost",
]
EVENT_KINDS: frozenset[str] = frozenset(get_args(EventKind))


class EventSink:
    def __init__(
        self,
        traces: TraceStore | None = None,
        listeners: list[Listener] | None = None,
        detail_listeners: list[Listener] | None = None,
    ):
        self.traces = traces
        self.listeners = list(listeners or [])
        self.detail_listeners = list(detail_listeners or [])  # also get ``record`` events

    def record(self, kind: EventKind, **data: Any) -> None:
        """Into the trace store only: fine-grained events (node timings, verdicts) that would
        flood a progress display or an ``--events`` stream, but which a dashboard shows."""
        if self.traces is not None:
            self.traces.record_event(
                kind, data, sample_id=data.get("sample_id"), persona_id=data.get("persona_id")
            )
        if self.detail_listeners:
            event = {"event": kind, "ts": round(time.time(), 3), **data}
            for listener in self.detail_listeners:
                listener(event)

    def emit(self, kind: EventKind, **data: Any) -> None:
        if self.traces is not None:
            self.traces.record_event(
                kind, data, sample_id=data.get("sample_id"), persona_id=data.get("persona_id")
            )
        event = {"event": kind, "ts": round(time.time(), 3), **data}
        for listener in (*self.listeners, *self.detail_listeners):
            listener(event)
