"""One LLM call whole (``personaloom traces show``): facts, parameters, every message,
the raw reply, the parsed result and the error; ``e`` replays it with an edited prompt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from personaloom.trace_views import call_view
from personaloom.traces import TraceStore
from personaloom.tui.view import TRACES


class CallScreen(Screen):
    """Pushed from the Traces screen; escape goes back."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("e", "replay", "Edit prompt and replay"),
    ]

    @dataclass
    class Loaded(Message):
        call: dict[str, Any] | None
        body: RenderableType

    def __init__(self, run_dir: Path, call_id: int) -> None:
        super().__init__()
        self.run_dir, self.call_id = run_dir, call_id
        self.call: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="call-scroll", classes="panel"):
            yield Static("loading…", id="call-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#call-scroll").border_title = f"Call {self.call_id}"
        self._load()

    @work(thread=True, exit_on_error=False, group="call")
    def _load(self) -> None:
        traces = TraceStore(self.run_dir / TRACES, readonly=True)
        try:
            rows = traces.calls("id = ?", [self.call_id])
            if rows:
                self.post_message(self.Loaded(rows[0], call_view(traces, rows[0])))
            else:
                self.post_message(self.Loaded(None, Text(f"no call {self.call_id}")))
        finally:
            traces.close()

    def on_call_screen_loaded(self, message: Loaded) -> None:
        self.call = message.call
        self.query_one("#call-body", Static).update(message.body)

    def action_replay(self) -> None:
        from personaloom.tui.screens.replay import ReplayScreen

        if self.call is None:
            return
        if not self.call.get("variables"):
            self.notify("this call has no recorded template inputs: it cannot be replayed")
            return
        self.app.push_screen(ReplayScreen(self.run_dir, self.call))
