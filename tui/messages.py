"""Messages the dashboard's workers post to the app (from their threads: posting is
thread-safe), so every widget update happens on the UI thread."""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Any

from textual.message import Message

from personaloom.tui.view import RunView


@dataclass
class EventsArrived(Message):
    """New events wait in the app's queue. Only a wake-up: the events themselves are in a
    deque, so a flood of node events collapses into one message (``can_replace``)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsArrived)


@dataclass
class ViewLoaded(Message):
    """A fresh read of the run directory (report, rows)."""

    view: RunView

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ViewLoaded)


@dataclass
class ViewFailed(Message):
    """Reading the run directory failed; the loader tries again."""

    error: str


@dataclass
class ReviewRequested(Message):
    """A batch of critic-accepted samples waits for the person: resolve ``decided`` with
    ``{sample_id: approved}``."""

    samples: list[dict[str, Any]]
    decided: concurrent.futures.Future


@dataclass
class RunEnded(Message):
    """The supervised run returned (``result``), failed (``error``) or was cut short."""

    result: Any | None  # personaloom.runner.RunResult
    error: str | None = None
    interrupted: bool = False


@dataclass
class Notice(Message):
    """A line the run would print on stderr (which would tear the screen)."""

    text: str
