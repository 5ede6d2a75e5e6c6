"""The live feed: accepted and rejected samples as they are committed, with the reason.

Append-only (a reactive list would re-render everything per event): ``add_items`` adds
rows at the bottom, keeps the last ``FEED_SIZE`` and follows the end unless the person has
moved the cursor up. Enter (or a click) on a sample opens it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from personaloom.tui.state import FEED_SIZE, FeedItem

MARKS = {
    "accepted": ("✓ accepted", "green"),
    "rejected": ("✗ rejected", "red"),
    "aborted": ("- aborted", "yellow"),
    "stagnant": ("! coverage", "red bold"),
    "review": ("? review", "magenta"),
}


class SampleFeed(DataTable):
    """Rows keyed by a running number; ``OpenSample`` carries the sample id."""

    class OpenSample(Message):
        def __init__(self, sample_id: str) -> None:
            super().__init__()
            self.sample_id = sample_id

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._count = 0
        self._samples: dict[str, str] = {}

    def on_mount(self) -> None:
        for label in ("time", "outcome", "sample", "traits", "detail"):
            self.add_column(label, key=label)

    def add_items(self, items: Iterable[FeedItem]) -> None:
        following = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        for item in items:
            self._count += 1
            key = str(self._count)
            mark, style = MARKS.get(item.kind, (item.kind, ""))
            traits = " ".join(f"{k}={v}" for k, v in item.traits.items())
            self.add_row(
                Text(datetime.fromtimestamp(item.ts).strftime("%H:%M:%S"), style="dim"),
                Text(mark, style=style),
                Text(item.sample_id or ""),
                Text(traits),
                Text(item.detail.replace("\n", " ")[:200]),
                key=key,
            )
            if item.sample_id:
                self._samples[key] = item.sample_id
        while self.row_count > FEED_SIZE:
            oldest = next(iter(self.rows))
            self._samples.pop(oldest.value or "", None)
            self.remove_row(oldest)
        if following and self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        sample = self._samples.get(event.row_key.value or "")
        if sample:
            event.stop()
            self.post_message(self.OpenSample(sample))
