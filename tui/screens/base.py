"""What the four main screens share: they get the app's run view and activity while shown.

A screen subscribes to the app's signals when it becomes current and unsubscribes when it is
left, so a hidden screen does no work; on return it catches up with the latest view at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

from personaloom.tui.view import RunView

if TYPE_CHECKING:
    from personaloom.tui.app import PersonaloomApp


class RunScreen(Screen):
    """Override ``show_view`` (a fresh read of the run directory) and ``show_activity``
    (events were folded, or a second passed)."""

    @property
    def loom(self) -> PersonaloomApp:
        return self.app  # type: ignore[return-value]

    def on_screen_resume(self) -> None:
        app = self.loom
        app.view_changed.unsubscribe(self)
        app.activity_changed.unsubscribe(self)
        app.view_changed.subscribe(self, self.show_view)
        app.activity_changed.subscribe(self, self.show_activity)
        if app.view is not None:
            self.show_view(app.view)
        self.show_activity(None)

    def on_screen_suspend(self) -> None:
        self.loom.view_changed.unsubscribe(self)
        self.loom.activity_changed.unsubscribe(self)

    def show_view(self, view: RunView) -> None:
        """A fresh read of the run directory."""

    def show_activity(self, _: None) -> None:
        """Events were folded into ``app.state``, or the clock moved."""
