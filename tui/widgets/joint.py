"""The joint-coverage grid: accepted against target for every pair of trait values.

Per-trait coverage can be met while whole combinations stay empty (every ``moral`` story set
in the forest); this grid shows that. It renders the report's ``joint`` section, one table
per pair of traits; reports without one get an explanatory empty state.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from personaloom.tui.widgets.coverage import STYLES, cell_status

EMPTY = (
    "No joint targets in this spec. A joint: entry (every cell of two traits' value grid "
    "needs N accepted samples) shows here as a grid."
)


def joint_tables(joint: list[dict[str, Any]]) -> list[Table]:
    """One table per pair: rows are the first trait's values, columns the second's."""
    tables = []
    for pair in joint:
        first, second = pair["traits"][:2]
        cells = {tuple(c["values"][:2]): c for c in pair.get("cells", [])}
        rows = list(dict.fromkeys(v[0] for v in cells))
        columns = list(dict.fromkeys(v[1] for v in cells))
        table = Table(
            title=Text.assemble((first, "bold"), " × ", (second, "bold")),
            title_justify="left",
            box=None,
            padding=(0, 1),
            show_edge=False,
        )
        table.add_column(Text(""), style="bold", no_wrap=True)
        for column in columns:
            table.add_column(Text(column), justify="center", no_wrap=True)
        for row in rows:
            line: list[RenderableType] = [Text(row)]
            for column in columns:
                cell = cells.get((row, column))
                if cell is None or cell_status(cell) == "no target":
                    line.append(Text("·", style="dim"))
                    continue
                style = STYLES[cell_status(cell)]
                line.append(Text(f"{cell.get('accepted', 0)}/{cell['target']}", style=style))
            table.add_row(*line)
        tables.append(table)
    return tables


class JointGrid(Static):
    """Renders ``report["joint"]``: a list of ``{"traits": [a, b], "cells": [{"values":
    [va, vb], "target", "accepted", "attempts", "acceptance_rate"}]}``."""

    joint: reactive[list[dict[str, Any]] | None] = reactive(None, layout=True)
    """The report's ``joint`` section; None when the report has none."""

    def render(self) -> RenderableType:
        if not self.joint:
            return Text(EMPTY, style="dim italic")
        tables = joint_tables(self.joint)
        parts: list[RenderableType] = []
        for table in tables:
            if parts:
                parts.append(Text(""))
            parts.append(table)
        return Group(*parts)
