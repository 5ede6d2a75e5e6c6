"""The run's counters: accepted against the total target, rejections by reason, calls,
tokens (and cost, when the spec has prices), cache hits, the acceptance rate and the time left at that rate, and the live bars.

Exact counts come from the report (read from the run's files); the rate and the time left
come from the event fold, because only events carry when each sample was accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from personaloom.tui.state import Pace, format_eta

STATUS_STYLES = {
    "running": "green bold",
    "paused": "yellow bold",
    "stopping": "yellow bold",
    "review": "magenta bold",
    "complete": "green bold",
    "starting": "dim",
}


@dataclass(frozen=True)
class Bars:
    """The bars drafts still to come are judged by, and where each comes from."""

    novelty: float
    novelty_changed: bool
    min_score: int
    min_score_changed: bool
    review: bool


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


class Counters(Static):
    """Renders the counters panel; every input is a reactive, so it repaints on change."""

    DEFAULT_CSS = "Counters { height: auto; }"

    report: reactive[dict[str, Any] | None] = reactive(None, layout=True)
    """The latest report dict."""
    pace: reactive[Pace | None] = reactive(None, layout=True)
    """Accepted per minute, samples still needed, time left. A layout too: in a narrow panel
    the line wraps, and a height computed for the old text would hide the last row."""
    status: reactive[str] = reactive("starting", layout=True)
    """running, paused, stopping, review, or the run's final status."""
    bars: reactive[Bars | None] = reactive(None, layout=True)
    """The live novelty threshold and critic bar; None in watch mode (not known)."""
    ray_workers: reactive[tuple[dict[str, Any], ...]] = reactive((), layout=True)
    """Ray workers' latest stats (``--workers``); empty for a run in one process. Not
    ``workers``: that is Textual's own worker manager on every widget."""

    def render(self) -> RenderableType:
        report = self.report or {}
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        status = self.status
        if report.get("stop_reason") and status not in ("running", "paused", "stopping"):
            status = f"{status} ({report['stop_reason']})"
        grid.add_row("status", Text(status, style=STATUS_STYLES.get(self.status, "red bold")))
        accepted, target = report.get("accepted"), report.get("total_target")
        grid.add_row(
            "accepted",
            Text.assemble(
                (_number(accepted), "green bold"),
                f" of {_number(target)} needed" if target is not None else "",
                "   rejected ",
                (_number(report.get("rejected")), "red bold" if report.get("rejected") else ""),
                f"   personas {_number(report.get('personas'))}",
            ),
        )
        grid.add_row(
            "calls",
            Text(
                f"{_number(report.get('calls'))}   cache hits {_number(report.get('cache_hits'))}"
                f"   errors {_number(report.get('call_errors'))}"
            ),
        )
        grid.add_row("tokens", self._tokens(report))
        grid.add_row("pace", self._pace())
        if self.ray_workers:
            grid.add_row("workers", self._workers(self.ray_workers))
        if self.bars is not None:
            grid.add_row("bars", self._bars(self.bars))
            review = self.bars.review
            grid.add_row(
                "review", Text("on", style="magenta bold") if review else Text("off", style="dim")
            )
        reasons = report.get("rejections") or {}
        text = Text()
        for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
            if text:
                text.append("  ")
            text.append(reason, style="red")
            text.append(f" {count}")
        grid.add_row("rejected by", text or Text("-", style="dim"))
        return grid

    @staticmethod
    def _tokens(report: dict[str, Any]) -> Text:
        """Tokens, and the cost when the spec has prices (against ``max_cost`` if set)."""
        text = Text(_number(report.get("tokens")))
        cost = report.get("cost")
        if cost:
            limit = cost.get("max_cost")
            text.append(f"   cost {cost['total']:.4f}" + (f" of {limit:g}" if limit else ""))
        return text

    @staticmethod
    def _workers(workers: tuple[dict[str, Any], ...]) -> Text:
        """One entry per worker: alive or lost, drafts in flight, accepted samples/s."""
        text = Text()
        for worker in workers:
            if text:
                text.append("   ")
            alive = worker.get("alive", True)
            text.append(f"#{worker.get('worker')}", style="green bold" if alive else "red bold")
            text.append(
                f" {worker.get('in_flight', 0)} in flight {worker.get('samples_per_s', 0.0):.2f}/s"
            )
            if worker.get("lost"):
                text.append(f" lost {worker['lost']}", style="red")
        return text

    def _pace(self) -> Text:
        pace = self.pace
        if pace is None or pace.per_minute is None:
            rate = Text("- samples/min", style="dim")
        else:
            rate = Text(f"{pace.per_minute:.1f} samples/min")
        if pace is not None and pace.remaining == 0:
            left = "none to go"
        elif pace is not None and pace.eta_seconds is not None:
            left = f"{pace.remaining} to go, ~{format_eta(pace.eta_seconds)} left"
        elif pace is not None and pace.remaining is not None:
            left = f"{pace.remaining} to go"
        else:
            left = ""
        return Text.assemble(rate, "   ", left)

    @staticmethod
    def _bars(bars: Bars) -> Text:
        def mark(changed: bool) -> tuple[str, str]:
            return (" (live)", "yellow") if changed else (" (spec)", "dim")

        return Text.assemble(
            f"novelty < {bars.novelty:.2f}",
            mark(bars.novelty_changed),
            f"   critic ≥ {bars.min_score}",
            mark(bars.min_score_changed),
        )
