"""One sample or rejected draft whole: its record, persona, traits, words, critic and novelty
findings, and its lineage from the source text through every call and verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree as RichTree
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from personaloom.trace_views import lineage_tree
from personaloom.traces import TraceStore
from personaloom.tui.view import TRACES
from personaloom.tui.widgets.lineage import LineageTree


def _origin(lineage: dict[str, Any]) -> str:
    """The source text of a sample's persona chain, or its pool file and row."""
    pool = lineage.get("pool")
    return f"pool {pool['file']} row {pool['row']}" if pool else str(lineage.get("source_text_id"))


def sample_summary(row: dict[str, Any], accepted: bool) -> RenderableType:
    """The record and what was decided about it, as one renderable."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    if accepted:
        grid.add_row("status", Text("accepted", style="green bold"))
        persona = row.get("persona", {})
        grid.add_row("persona", Text(f"{persona.get('id')}: {persona.get('text', '')}"))
        lineage = row.get("lineage", {})
        grid.add_row(
            "lineage",
            Text(
                " <- ".join(lineage.get("persona_ids", []))
                + f"  from {_origin(lineage)} ({lineage.get('relation')}),"
                f" round {lineage.get('round')}, {lineage.get('revisions')} revisions"
            ),
        )
    else:
        grid.add_row("status", Text(f"rejected: {row.get('reason')}", style="red bold"))
        grid.add_row("details", Text(row.get("details") or ""))
        grid.add_row("persona", Text(str(row.get("persona_id"))))
        grid.add_row("revisions", Text(str(row.get("revisions"))))
    grid.add_row("traits", Text(" ".join(f"{k}={v}" for k, v in row.get("traits", {}).items())))
    words = row.get("words") or {}
    if words:
        grid.add_row("words", Text(" ".join(f"{k}={v}" for k, v in words.items())))
    critic = row.get("critic") or {}
    grid.add_row("critic", Text(f"score {critic.get('score')}: {critic.get('feedback') or '-'}"))
    novelty = row.get("novelty") or {}
    nearest = novelty.get("neighbour_id")
    grid.add_row(
        "novelty",
        Text(f"nearest {nearest} at {novelty.get('similarity')}" if nearest else "no neighbour"),
    )
    output = row.get("output") if accepted else row.get("draft")
    parts: list[RenderableType] = [grid, Text("")]
    if isinstance(output, dict):
        for field, value in output.items():
            parts.append(Text(field, style="bold underline"))
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            parts.append(Text(text + "\n"))
    else:
        parts.append(Text("(the writer produced no draft)", style="dim"))
    return Group(*parts)


class SampleScreen(Screen):
    """Pushed over any screen; escape goes back."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    @dataclass
    class Loaded(Message):
        """The loader's result: the summary and lineage, or why there is none."""

        summary: RenderableType | None
        tree: RichTree | None
        error: str | None

    def __init__(self, sample_id: str) -> None:
        super().__init__()
        self.sample_id = sample_id

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="sample-scroll"):
            yield Static("loading…", id="sample-summary", classes="panel")
            yield LineageTree(id="lineage", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sample-summary").border_title = f"Sample {self.sample_id}"
        self.query_one("#lineage").border_title = "Lineage: source text, personas, calls, verdicts"
        self._load()

    @work(thread=True, exit_on_error=False, group="sample")
    def _load(self) -> None:
        """Read the row and the lineage off the UI thread (the trace store can be large)."""
        app = self.app
        view = app.view  # type: ignore[attr-defined]
        if view is None:
            self.post_message(self.Loaded(None, None, "the run directory is not read yet"))
            return
        row, accepted = None, False
        for candidate in view.store.dataset.rows:
            if candidate["id"] == self.sample_id:
                row, accepted = candidate, True
        if row is None:
            row = next((r for r in view.store.rejected.rows if r["id"] == self.sample_id), None)
        traces = TraceStore(view.run_dir / TRACES, readonly=True)
        try:
            tree = lineage_tree(traces, view.run_dir, self.sample_id)
            error = None
        except Exception as exc:  # noqa: BLE001 - shown in place of the tree
            tree, error = None, str(exc)
        finally:
            traces.close()
        summary = sample_summary(row, accepted) if row is not None else None
        self.post_message(self.Loaded(summary, tree, error))

    def on_sample_screen_loaded(self, message: Loaded) -> None:
        summary, tree, error = message.summary, message.tree, message.error
        self.query_one("#sample-summary", Static).update(
            summary if summary is not None else Text(error or "not found", style="red")
        )
        lineage = self.query_one(LineageTree)
        if tree is not None:
            lineage.source = tree
        else:
            lineage.source = RichTree(Text(error or "no lineage", style="red"))
