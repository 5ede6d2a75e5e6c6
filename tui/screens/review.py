"""Review mode: a person approves or rejects each critic-accepted sample before it counts.

The graph waits on a LangGraph interrupt meanwhile (drafts already in flight finish); the
screen dismisses with ``{sample_id: approved}`` once every sample of the batch is decided,
and a rejected one is written to ``rejected.jsonl`` with reason ``human_rejected``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


def review_card(sample: dict[str, Any]) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("sample", Text(sample["id"]))
    grid.add_row("persona", Text(f"{sample.get('persona_id')}: {sample.get('persona', '')}"))
    grid.add_row("traits", Text(" ".join(f"{k}={v}" for k, v in sample["traits"].items())))
    if sample.get("words"):
        grid.add_row("words", Text(" ".join(f"{k}={v}" for k, v in sample["words"].items())))
    grid.add_row("critic", Text(f"score {sample.get('score')}: {sample.get('feedback') or '-'}"))
    parts: list[RenderableType] = [grid, Text("")]
    for field, value in (sample.get("output") or {}).items():
        parts.append(Text(field, style="bold underline"))
        parts.append(Text(str(value) + "\n"))
    return Group(*parts)


class ReviewScreen(ModalScreen[dict[str, bool]]):
    """One sample at a time: ``a`` approves, ``x`` rejects, ``A`` approves the rest, ``v``
    turns review off (approving the rest). A modal screen hides the app's bindings, so
    quitting is bound here too: the graph waits on this screen, it must not trap the user."""

    BINDINGS = [
        Binding("a", "decide(True)", "Approve"),
        Binding("x", "decide(False)", "Reject"),
        Binding("A", "approve_rest", "Approve the rest"),
        Binding("v", "stop_reviewing", "Review off"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        super().__init__()
        self.samples = samples
        self.decisions: dict[str, bool] = {}
        self.index = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="review-box"):
            yield Label(id="review-title")
            yield Label(
                "a approve · x reject · A approve the rest · v review off · q quit (resumable)",
                id="review-keys",
            )
            with VerticalScroll(id="review-scroll"):
                yield Static(id="review-card")
            with Horizontal(id="review-buttons"):
                yield Button("Approve (a)", variant="success", id="approve")
                yield Button("Reject (x)", variant="error", id="reject")
                yield Button("Approve the rest (A)", id="approve-rest")

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        sample = self.samples[self.index]
        self.query_one("#review-title", Label).update(
            f"Review {self.index + 1} of {len(self.samples)}: the critic accepted this sample;"
            " approve it or reject it before it counts"
        )
        self.query_one("#review-card", Static).update(review_card(sample))
        self.query_one("#review-scroll").scroll_home(animate=False)

    def action_decide(self, approved: bool) -> None:
        self.decisions[self.samples[self.index]["id"]] = approved
        self.index += 1
        if self.index >= len(self.samples):
            self.dismiss(self.decisions)
        else:
            self._show()

    def action_approve_rest(self) -> None:
        for sample in self.samples[self.index :]:
            self.decisions[sample["id"]] = True
        self.dismiss(self.decisions)

    def action_stop_reviewing(self) -> None:
        control = getattr(self.app, "control", None)
        if control is not None:
            control.review = False
            self.app.notify("review off")
        self.action_approve_rest()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "approve":
            self.action_decide(True)
        elif event.button.id == "reject":
            self.action_decide(False)
        else:
            self.action_approve_rest()
