"""Traces: the run's LLM calls with the filters of ``personaloom traces`` (agent, status,
sample, persona, since, slowest) and the totals per agent; enter opens a call.

The filtering is ``trace_views.select`` itself and the totals ``trace_views.totals_table``,
so the screen and the CLI list the same calls for the same filters.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Select, Static

from personaloom.trace_views import select, totals_table
from personaloom.traces import TraceStore
from personaloom.tui.screens.base import RunScreen
from personaloom.tui.screens.call import CallScreen
from personaloom.tui.view import TRACES, RunView

AGENT_NAMES = ("persona_miner", "persona_relater", "writer", "critic")
LIMIT = 500  # most recent calls shown, as the CLI's --limit


class TracesScreen(RunScreen):
    """Filters at the top, calls in the middle, totals per agent at the bottom."""

    AUTO_FOCUS = "#calls"

    @dataclass
    class Listed(Message):
        """The query's result (or why it failed)."""

        calls: list[dict[str, Any]]
        error: str | None

    def __init__(self) -> None:
        super().__init__()
        self._calls_seen: int | None = None
        self._query: argparse.Namespace | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="trace-filters", classes="filters"):
            yield Select([(a, a) for a in AGENT_NAMES], prompt="any agent", id="agent")
            yield Select(
                [("ok", "ok"), ("error", "error"), ("rejected", "rejected")],
                prompt="any status",
                id="call-status",
            )
            yield Input(placeholder="sample id", id="sample")
            yield Input(placeholder="persona id", id="persona")
            yield Input(placeholder="since: 10m, 2h, ISO", id="since")
            yield Input(placeholder="slowest N", id="slowest", type="integer")
        with Vertical(id="calls-panel", classes="panel"):
            yield DataTable(id="calls", cursor_type="row")
        yield Static(id="totals", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#calls", DataTable)
        for label in ("id", "time", "agent", "sample", "persona", "att", "status", "ms", "tokens"):
            table.add_column(label, key=label)
        table.add_column("cache", key="cache")
        self.query_one("#calls-panel").border_title = "LLM calls (enter: open, then e: replay)"
        self.query_one("#totals").border_title = "Totals per agent"

    def show_view(self, view: RunView) -> None:
        report = view.report
        seen = (report.get("calls") or 0) + (report.get("cache_hits") or 0)
        if seen != self._calls_seen:  # new calls: list again with the same filters
            self._calls_seen = seen
            self._list()

    def filters(self) -> argparse.Namespace:
        """The CLI's arguments for ``trace_views.select``."""

        def chosen(selector: str) -> str | None:
            value = self.query_one(selector, Select).value
            return None if value is Select.NULL else str(value)

        def typed(selector: str) -> str | None:
            return self.query_one(selector, Input).value.strip() or None

        slowest = typed("#slowest")
        return argparse.Namespace(
            agent=chosen("#agent"),
            status=chosen("#call-status"),
            sample=typed("#sample"),
            persona=typed("#persona"),
            since=typed("#since"),
            slowest=int(slowest) if slowest and slowest.isdigit() else None,
        )

    def on_select_changed(self, event: Select.Changed) -> None:
        self._list()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._list()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("sample", "persona") or not event.value:
            self._list()

    def _list(self) -> None:
        view = self.loom.view
        if view is not None and (view.run_dir / TRACES).exists():
            self._query_calls(view, self.filters())

    @work(thread=True, exclusive=True, exit_on_error=False, group="calls")
    def _query_calls(self, view: RunView, args: argparse.Namespace) -> None:
        """Query the trace store off the UI thread."""
        traces = TraceStore(view.run_dir / TRACES, readonly=True)
        try:
            calls = select(traces, view.run_dir, args)
            self.post_message(self.Listed(calls, None))
        except Exception as exc:  # noqa: BLE001 - a bad --since, say; shown in place
            self.post_message(self.Listed([], str(exc)))
        finally:
            traces.close()

    def on_traces_screen_listed(self, message: Listed) -> None:
        panel = self.query_one("#calls-panel")
        if message.error:
            panel.border_subtitle = message.error
            self.notify(message.error, severity="error")
            return
        calls = message.calls
        shown = calls if self.filters().slowest else calls[-LIMIT:]
        table = self.query_one("#calls", DataTable)
        cursor = table.cursor_row
        table.clear()
        for c in shown:
            tokens = (c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0)
            status = Text(c["status"], style="" if c["status"] == "ok" else "red")
            table.add_row(
                Text(str(c["id"]), justify="right"),
                datetime.fromtimestamp(c["ts"]).strftime("%H:%M:%S"),
                c["agent"],
                c["sample_id"] or "",
                c["persona_id"] or "",
                Text(str(c["attempt"]), justify="right"),
                status,
                Text(
                    f"{c['latency_ms']:.0f}" if c["latency_ms"] is not None else "", justify="right"
                ),
                Text(str(tokens or ""), justify="right"),
                "hit" if c["cache_hit"] else "",
                key=str(c["id"]),
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1), animate=False)
        panel.border_subtitle = f"{len(shown)} of {len(calls)} calls"
        self.query_one("#totals", Static).update(
            totals_table(calls, box=None, padding=(0, 2), header_style="bold")
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        view = self.loom.view
        if view is not None and event.row_key.value:
            self.app.push_screen(CallScreen(view.run_dir, int(event.row_key.value)))
