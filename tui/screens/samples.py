"""Samples: every accepted sample and rejected draft, filtered by trait value, status,
rejection reason or text; enter opens one with its full lineage.

The dataset and rejection files only grow, so while the filters stay the same new rows are
appended rather than the table rebuilt (a long run has thousands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Select

from personaloom.tui.screens.base import RunScreen
from personaloom.tui.view import RunView


@dataclass(frozen=True)
class SampleFilter:
    status: str | None = None  # accepted | rejected
    trait: str | None = None  # "trait=value"
    reason: str | None = None
    text: str = ""

    def matches(self, row: dict[str, Any], accepted: bool) -> bool:
        if self.status and (self.status == "accepted") != accepted:
            return False
        if self.reason and (accepted or row.get("reason") != self.reason):
            return False
        if self.trait:
            trait, _, value = self.trait.partition("=")
            if row.get("traits", {}).get(trait) != value:
                return False
        if self.text:
            needle = self.text.lower()
            persona = row.get("persona", {}).get("text", "") if accepted else ""
            output = row.get("output") if accepted else row.get("draft")
            haystack = f"{row['id']} {persona} {output or ''} {row.get('details', '')}"
            if needle not in haystack.lower():
                return False
        return True


def sample_rows(view: RunView, filters: SampleFilter, start: tuple[int, int] = (0, 0)):
    """``(row, accepted)`` of samples and drafts matching, after the first ``start`` rows of
    the dataset and rejection files, in draft-id (chronological) order."""
    store = view.store
    rows = [(r, True) for r in store.dataset.rows[start[0] :]]
    rows += [(r, False) for r in store.rejected.rows[start[1] :]]
    rows.sort(key=lambda pair: pair[0]["id"])
    return [(r, ok) for r, ok in rows if filters.matches(r, ok)]


def preview(row: dict[str, Any], accepted: bool, width: int = 90) -> str:
    output = (row.get("output") if accepted else row.get("draft")) or {}
    text = " · ".join(str(v) for v in output.values()) if isinstance(output, dict) else ""
    return text.replace("\n", " ")[:width]


class SamplesScreen(RunScreen):
    """Filters at the top; the table below; enter opens a sample."""

    AUTO_FOCUS = "#samples"

    def __init__(self) -> None:
        super().__init__()
        self.filters = SampleFilter()
        self._counts: tuple[int, int] = (0, 0)
        self._options: tuple[Any, ...] = ()
        self._matched = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="sample-filters", classes="filters"):
            yield Select(
                [("accepted", "accepted"), ("rejected", "rejected")],
                prompt="any status",
                id="status",
            )
            yield Select([], prompt="any trait value", id="trait")
            yield Select([], prompt="any reason", id="reason")
            yield Input(placeholder="id, persona or text contains…", id="text")
        with Vertical(id="samples-panel", classes="panel"):
            yield DataTable(id="samples", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#samples", DataTable)
        for label in ("id", "status", "traits", "score / reason", "persona", "text"):
            table.add_column(label, key=label)
        self.query_one("#samples-panel").border_title = "Samples and rejected drafts"

    def set_filters(
        self,
        *,
        trait: str | None = None,
        status: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Set filters from elsewhere (the dashboard's coverage rows)."""
        if self.loom.view is not None:
            self._fill_options(self.loom.view)
        for selector, value in (("#trait", trait), ("#status", status), ("#reason", reason)):
            select = self.query_one(selector, Select)
            select.value = value if value else Select.NULL
        self.query_one("#text", Input).value = ""
        self.filters = SampleFilter(status=status, trait=trait, reason=reason)
        self._rebuild()

    def show_view(self, view: RunView) -> None:
        self._fill_options(view)
        counts = (len(view.store.dataset.rows), len(view.store.rejected.rows))
        if counts == self._counts:
            return
        self._add(sample_rows(view, self.filters, self._counts))
        self._counts = counts

    def _fill_options(self, view: RunView) -> None:
        traits = [f"{t}={v}" for t, values in view.spec.targets().items() for v in values]
        reasons = sorted(view.store.reasons)
        options = (tuple(traits), tuple(reasons))
        if options == self._options:
            return
        self._options = options
        for selector, values in (("#trait", traits), ("#reason", reasons)):
            select = self.query_one(selector, Select)
            current = select.value
            select.set_options([(v, v) for v in values])
            if current in values:
                select.value = current

    def on_select_changed(self, event: Select.Changed) -> None:
        self._refilter()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._refilter()

    def _refilter(self) -> None:
        def value(selector: str) -> str | None:
            chosen = self.query_one(selector, Select).value
            return None if chosen is Select.NULL else str(chosen)

        filters = SampleFilter(
            status=value("#status"),
            trait=value("#trait"),
            reason=value("#reason"),
            text=self.query_one("#text", Input).value.strip(),
        )
        if filters != self.filters:
            self.filters = filters
            self._rebuild()

    def _rebuild(self) -> None:
        view = self.loom.view
        self.query_one("#samples", DataTable).clear()
        self._matched = 0
        if view is None:
            return
        self._counts = (len(view.store.dataset.rows), len(view.store.rejected.rows))
        self._add(sample_rows(view, self.filters))

    def _add(self, rows: list[tuple[dict[str, Any], bool]]) -> None:
        table = self.query_one("#samples", DataTable)
        for row, accepted in rows:
            if row["id"] in table.rows:
                continue  # rewritten after a crash: the files keep ids unique anyway
            traits = " ".join(f"{k}={v}" for k, v in row.get("traits", {}).items())
            if accepted:
                status = Text("accepted", style="green")
                score = row.get("critic", {}).get("score")
                why = Text(f"score {score}" if score is not None else "")
                persona = row.get("persona", {}).get("id", "")
            else:
                status = Text("rejected", style="red")
                why = Text(row.get("reason", ""), style="red")
                persona = row.get("persona_id") or ""
            table.add_row(
                row["id"], status, traits, why, persona, preview(row, accepted), key=row["id"]
            )
            self._matched += 1
        self.query_one("#samples-panel").border_subtitle = f"{self._matched} shown"

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.loom.open_sample(event.row_key.value)
