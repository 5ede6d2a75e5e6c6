"""Run events: what happened, for the progress bar, ``--events`` JSON lines and the trace store."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from personaloom.traces import TraceStore

Listener = Callable[[dict[str, Any]], None]


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

    def record(self, kind: str, **data: Any) -> None:
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

    def emit(self, kind: str, **data: Any) -> None:
        if self.traces is not None:
            self.traces.record_event(
                kind, data, sample_id=data.get("sample_id"), persona_id=data.get("persona_id")
            )
        event = {"event": kind, "ts": round(time.time(), 3), **data}
        for listener in (*self.listeners, *self.detail_listeners):
            listener(event)
