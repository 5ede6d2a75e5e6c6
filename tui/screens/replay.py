"""Replay one call with an edited prompt: the call's template in an editor, optionally
another model or temperature; ctrl+r sends it and shows the new reply and a diff against
the recorded one. ``personaloom.replay.Replayer`` does the work, as for ``traces replay``,
so the replay is recorded as a trace of its own (``replay_of`` = this call).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static, TextArea

from personaloom.prompts import load_template
from personaloom.store import load_run


def template_source(run_dir: Path, agent: str) -> str:
    """The template the run used for this agent: the spec's override, else the packaged one."""
    spec, _ = load_run(run_dir)
    override = spec.resolve(spec.prompts[agent]) if agent in spec.prompts else None
    return load_template(agent, override).source


def replay_result(results: list[Any]) -> RenderableType:
    """New reply and diff per replay (``personaloom.replay.Replay``)."""
    parts: list[RenderableType] = []
    for result in results:
        if result.error:
            parts.append(Text(f"failed: {result.error}", style="red"))
            continue
        parts.append(Text("new reply", style="bold underline"))
        parts.append(Syntax(json.dumps(result.parsed, indent=2, ensure_ascii=False), "json"))
        parts.append(Text("diff against the recorded reply", style="bold underline"))
        diff = result.diff()
        parts.append(Syntax(diff, "diff") if diff else Text("(identical)", style="dim"))
    return Group(*parts)


class ReplayScreen(Screen):
    """Pushed from a call; escape goes back."""

    BINDINGS = [
        Binding("ctrl+r", "replay", "Replay", priority=True),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    @dataclass
    class Done(Message):
        body: RenderableType

    def __init__(self, run_dir: Path, call: dict[str, Any]) -> None:
        super().__init__()
        self.run_dir, self.call = run_dir, call
        self.running = False

    def compose(self) -> ComposeResult:
        params = json.loads(self.call["params"])
        yield Header()
        with Horizontal():
            with Vertical(id="replay-edit", classes="panel"):
                yield TextArea(
                    template_source(self.run_dir, self.call["agent"]),
                    id="prompt",
                    soft_wrap=True,
                    show_line_numbers=True,
                )
                with Horizontal(id="replay-options"):
                    yield Label("model")
                    yield Input(placeholder=str(params.get("model") or ""), id="model")
                    yield Label("temperature")
                    yield Input(
                        placeholder=str(params.get("temperature", "")),
                        id="temperature",
                        type="number",
                    )
            with VerticalScroll(id="replay-result-panel", classes="panel"):
                yield Static(
                    Text("edit the template, then ctrl+r to replay", style="dim"),
                    id="replay-result",
                )
        yield Footer()

    def on_mount(self) -> None:
        call = self.call
        self.query_one(
            "#replay-edit"
        ).border_title = (
            f"{call['template']} for call {call['id']} ({call['agent']}, {call['sample_id']})"
        )
        self.query_one("#replay-result-panel").border_title = "Replay"
        self.query_one("#prompt", TextArea).focus()

    def action_replay(self) -> None:
        if self.running:
            return
        self.running = True
        temperature = self.query_one("#temperature", Input).value.strip()
        self.query_one("#replay-result", Static).update(Text("replaying…", style="yellow"))
        self._replay(
            self.query_one("#prompt", TextArea).text,
            self.query_one("#model", Input).value.strip() or None,
            float(temperature) if temperature else None,
        )

    @work(thread=True, exit_on_error=False, group="replay")
    def _replay(self, source: str, model: str | None, temperature: float | None) -> None:
        """On its own thread and event loop: the endpoint (maybe the embedded model,
        started for this) must not hold up the UI."""
        try:
            body = asyncio.run(self._send(source, model, temperature))
        except Exception as exc:  # noqa: BLE001 - a template error, an endpoint down: shown
            body = Text(f"replay failed: {type(exc).__name__}: {exc}", style="red")
        self.post_message(self.Done(body))

    async def _send(self, source: str, model: str | None, temperature: float | None):
        from personaloom.replay import Replayer  # the LLM stack, only when replaying

        overrides = getattr(self.app, "overrides", None)
        replayer = Replayer(self.run_dir, overrides=overrides)
        try:
            with tempfile.TemporaryDirectory() as folder:
                prompt = Path(folder) / self.call["template"]
                prompt.write_text(source, encoding="utf-8")
                results = await replayer.replay(
                    self.call, prompt=prompt, model=model, temperature=temperature
                )
        finally:
            await replayer.aclose()
        return replay_result(results)

    def on_replay_screen_done(self, message: Done) -> None:
        self.running = False
        self.query_one("#replay-result", Static).update(message.body)
