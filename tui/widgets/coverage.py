"""Coverage per trait value: accepted against target, with a bar and a status colour.

A ``DataTable`` so a person can move to a value and press enter (or click) to see its
samples. Rows are fixed by the spec; each report only updates cells, so the cursor stays.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

BAR = 10
STYLES = {
    "met": "green",
    "filling": "yellow",
    "stuck": "red bold",
    "set aside": "red",
    "given up": "red bold",
    "waiting": "dim",
    "no target": "dim",
}


def cell_status(cell: dict[str, Any], stuck: bool = False) -> str:
    """What a coverage cell's colour says. The report's own verdict when it has one
    (``set_aside``, ``given_up``, ``no_target``); else ``met``, ``stuck`` (listed as
    stagnant, or 5+ drafts accepted under 20% of the time), ``filling`` or ``waiting``."""
    accepted, target = cell.get("accepted", 0), cell.get("target", 0)
    attempts, rate = cell.get("attempts", 0), cell.get("acceptance_rate")
    reported = cell.get("status")
    if reported == "no_target" or target <= 0:
        return "no target"
    if accepted >= target:
        return "met"
    if reported in ("set_aside", "given_up"):
        return reported.replace("_", " ")
    if stuck or (attempts >= 5 and rate is not None and rate < 0.2):
        return "stuck"
    return "filling" if attempts else "waiting"


def bar(accepted: int, target: int, style: str, width: int = BAR) -> Text:
    filled = width if target <= 0 else min(width, round(width * accepted / target))
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"))


class CoverageTable(DataTable):
    """The report's ``coverage`` as a table; enter on a row posts ``RowSelected`` with the
    row key ``trait=value``."""

    DEFAULT_CSS = "CoverageTable { height: auto; max-height: 100%; }"

    report: reactive[dict[str, Any] | None] = reactive(None, always_update=True)
    """The latest report dict (``personaloom.report.build_report``); None before the first."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown: dict[str, tuple[dict[str, Any], str]] = {}

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        self.show_cursor = self.has_focus
        self.watch_report(self.report)

    def on_focus(self) -> None:
        self.show_cursor = True

    def on_blur(self) -> None:
        self.show_cursor = False  # an unfocused cursor row would hide that row's colours

    def _add_columns(self, coverage: dict[str, dict[str, Any]]) -> None:
        """Fixed widths, from the spec's names: the rows are known from the first report,
        and auto-sized columns would resize (and re-render the header) as numbers grow."""
        values = [v for cells in coverage.values() for v in cells]
        widest = max(
            (
                len(f"{c.get('target', 0)}/{c.get('target', 0)}")
                for cells in coverage.values()
                for c in cells.values()
            ),
            default=3,
        )
        for label, key, width in (
            ("trait", "trait", max([5, *map(len, coverage)])),
            ("value", "value", max([5, *map(len, values)])),
            ("coverage", "bar", BAR),
            ("accepted", "accepted", max(8, widest + 2)),
            ("drafts", "attempts", 6),
            ("rate", "rate", 5),
            ("status", "status", 9),
            ("top reason", "reason", 16),
        ):
            self.add_column(label, key=key, width=width)

    def watch_report(self, report: dict[str, Any] | None) -> None:
        if not report or not self.is_mounted:
            return
        if not self.columns:
            self._add_columns(report.get("coverage", {}))
        stagnant = {(s.get("trait"), s.get("value")) for s in report.get("stagnant") or []}
        for trait, values in report.get("coverage", {}).items():
            for index, (value, cell) in enumerate(values.items()):
                key = f"{trait}={value}"
                status = cell_status(cell, (trait, value) in stagnant)
                style = STYLES[status]
                rate = cell.get("acceptance_rate")
                row = {
                    "trait": Text(trait if index == 0 else "", style="bold"),
                    "value": Text(value),
                    "bar": bar(cell.get("accepted", 0), cell.get("target", 0), style),
                    "accepted": Text(
                        f"{cell.get('accepted', 0)}/{cell.get('target', 0)}", justify="right"
                    ),
                    "attempts": Text(str(cell.get("attempts", 0)), justify="right"),
                    "rate": Text("-" if rate is None else f"{rate:.0%}", justify="right"),
                    "status": Text(status, style=style),
                    "reason": Text(cell.get("top_reason") or "", style="dim"),
                }
                if key not in self.rows:
                    self.add_row(*row.values(), key=key)
                elif self._shown.get(key) != (cell, status):  # repaint changed rows only
                    for column, content in row.items():
                        self.update_cell(key, column, content)
                self._shown[key] = (cell, status)
