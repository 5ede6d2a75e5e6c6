"""Read-only views of a run directory: the report, rows and events behind the dashboard.

The dashboard reads a run's files like any other reader, in both modes: a supervised run
writes them on the graph's thread, a headless one from another process. So nothing here
opens the Chroma store (Chroma is not process-safe) or repairs a file: a torn last line is
the writer's to finish, and ``RunStore(readonly=True)`` skips it.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personaloom.corpus import MAX_TEXT_CHARS
from personaloom.report import build_report
from personaloom.runlock import effective_status
from personaloom.spec import Spec
from personaloom.store import RUN_JSON, TRACES, RunStore, load_run
from personaloom.traces import TraceStore

# Issue 4's report computes diversity metrics (embeddings) unless told not to; the dashboard
# rebuilds the report every few seconds and must stay cheap. Older reports have no keyword.
_CHEAP: dict[str, Any] = (
    {"diversity": False} if "diversity" in inspect.signature(build_report).parameters else {}
)


class NotReady(Exception):
    """The run directory is not written far enough to be read yet."""


@dataclass(frozen=True)
class RunView:
    """One consistent read of a run directory."""

    run_dir: Path
    spec: Spec
    meta: dict[str, Any]  # run.json
    store: RunStore  # read-only rows and counts
    report: dict[str, Any]  # as report.json would have it now
    load_seconds: float  # what this read cost: the next one waits a multiple of it


class ViewLoader:
    """Reads a run directory again and again, keeping one read-only trace connection."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.spec, _ = load_run(run_dir)
        self._traces: TraceStore | None = None

    def traces(self) -> TraceStore:
        if self._traces is None:
            if not (self.run_dir / TRACES).exists():
                raise NotReady(f"{self.run_dir} has no {TRACES} yet")
            self._traces = TraceStore(self.run_dir / TRACES, readonly=True)
        return self._traces

    def load(self) -> RunView:
        started = time.perf_counter()
        meta = json.loads((self.run_dir / RUN_JSON).read_text())  # written atomically
        store = RunStore(self.run_dir, readonly=True)
        report = build_report(
            self.spec,
            store,
            self.traces(),
            status=effective_status(self.run_dir, meta),
            stop_reason=meta.get("stop_reason"),
            spent=meta.get("spent"),
            **_CHEAP,
        )
        took = time.perf_counter() - started
        return RunView(self.run_dir, self.spec, meta, store, report, took)

    def close(self) -> None:
        if self._traces is not None:
            self._traces.close()
            self._traces = None


class EventTail:
    """New rows of the trace store's ``events`` table, as the listener dicts a run emits.

    ``watch`` follows a run with this: the table holds every event the run's listeners got.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / TRACES
        self.last_id = 0
        self._traces: TraceStore | None = None

    def read(self, limit: int = 2000) -> list[dict[str, Any]]:
        if self._traces is None:
            if not self.path.exists():
                return []
            self._traces = TraceStore(self.path, readonly=True)
        rows = self._traces.events(after_id=self.last_id, limit=limit)
        if rows:
            self.last_id = rows[-1]["id"]
        return [{**row["data"], "event": row["kind"], "ts": row["ts"]} for row in rows]

    def close(self) -> None:
        if self._traces is not None:
            self._traces.close()
            self._traces = None


def source_text(spec: Spec, text_id: str | None) -> str | None:
    """The corpus text behind a ``source_text_id``, cut as the persona-miner saw it.

    Ids are paths relative to the spec's folder, or ``path:line`` for a JSONL corpus.
    """
    if not text_id:
        return None
    path = spec.base_dir / text_id
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace").strip()[:MAX_TEXT_CHARS]
    name, _, line = text_id.rpartition(":")
    path = spec.base_dir / name
    if not (name and line.isdigit() and path.is_file()):
        return None
    field = next(
        (
            s.field
            for s in spec.corpus
            if s.jsonl and spec.resolve(s.jsonl).resolve() == path.resolve()
        ),
        "text",
    )
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(handle, 1):
            if number == int(line):
                try:
                    return str(json.loads(row).get(field, "")).strip()[:MAX_TEXT_CHARS]
                except (ValueError, AttributeError):
                    return None
    return None
