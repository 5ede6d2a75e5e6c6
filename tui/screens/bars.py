"""Change the bars for the drafts still to come: the novelty threshold (a draft this similar
to an accepted one is a near-duplicate) and the critic's minimum score. Samples already
accepted keep their verdict; the spec file is not changed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

Bars = tuple[float | None, int | None]  # overrides; None = the spec's value


def parse_bars(novelty: str, min_score: str, spec_novelty: float, spec_min: int) -> Bars:
    """The overrides the two fields ask for; raises ValueError saying what is wrong.
    A field left empty, or equal to the spec's value, means no override."""
    threshold: float | None = None
    if novelty.strip():
        threshold = float(novelty)
        if not 0 < threshold <= 1:
            raise ValueError("the novelty threshold is a cosine similarity in (0, 1]")
        if threshold == spec_novelty:
            threshold = None
    score: int | None = None
    if min_score.strip():
        if not min_score.strip().isdigit() or not 1 <= int(min_score) <= 5:
            raise ValueError("the critic's minimum score is a whole number from 1 to 5")
        score = int(min_score)
        if score == spec_min:
            score = None
    return threshold, score


class BarsScreen(ModalScreen[Bars | None]):
    """Enter or Apply applies; escape cancels; Reset goes back to the spec's values."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        *,
        novelty: float | None,
        min_score: int | None,
        spec_novelty: float,
        spec_min_score: int,
    ) -> None:
        super().__init__()
        self.spec_novelty, self.spec_min_score = spec_novelty, spec_min_score
        self.novelty = spec_novelty if novelty is None else novelty
        self.min_score = spec_min_score if min_score is None else min_score

    def compose(self) -> ComposeResult:
        with Vertical(id="bars-box"):
            yield Label("Bars for the drafts still to come", id="bars-title")
            yield Label(
                f"novelty threshold (spec {self.spec_novelty:.2f}): cosine similarity to an "
                "accepted sample at or above which a draft is a near-duplicate"
            )
            yield Input(f"{self.novelty:g}", id="novelty", type="number")
            yield Label(f"critic minimum score, 1-5 (spec {self.spec_min_score})")
            yield Input(str(self.min_score), id="min-score", type="integer")
            yield Label("", id="bars-error")
            with Horizontal(id="bars-buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Spec values", id="reset")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#novelty", Input).focus()

    def _apply(self) -> None:
        try:
            bars = parse_bars(
                self.query_one("#novelty", Input).value,
                self.query_one("#min-score", Input).value,
                self.spec_novelty,
                self.spec_min_score,
            )
        except ValueError as exc:
            message = str(exc)
            if "could not convert" in message:
                message = "the novelty threshold is a number such as 0.85"
            self.query_one("#bars-error", Label).update(message)
            return
        self.dismiss(bars)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self._apply()
        elif event.button.id == "reset":
            self.dismiss((None, None))
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
