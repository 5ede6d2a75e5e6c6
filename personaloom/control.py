"""Live controls for a running generation: pause, graceful stop, human review, and the
novelty and critic bars for drafts still to come.

The TUI drives a run through one :class:`RunControl`; scripts may too. The run's graph may
live on another thread (the TUI runs it in a thread worker), so every control is a
thread-safe flag the graph reads at its own step boundaries: nothing here touches the
graph's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

POLL_SECONDS = 0.05

# Decides on critic-accepted samples before they count: gets the samples of one batch
# (dicts with id, persona, traits, words, output, score, feedback) and returns
# ``{sample id: True to accept, False to reject}``; ids it leaves out are accepted.
Reviewer = Callable[[list[dict[str, Any]]], Awaitable[dict[str, bool]]]


class RunControl:
    """Thread-safe switches a running graph consults between steps.

    - ``pause()``: no new batch starts; drafts in flight finish.
    - ``stop()``: drafts in flight finish and are committed, then the run ends with status
      ``stopped``, checkpointed and resumable (``personaloom run --resume RUN_DIR``).
    - ``review``: when true, each batch's critic-accepted samples wait (a LangGraph
      interrupt) for the run's reviewer to approve or reject them before they count.
    - ``novelty_threshold`` / ``min_score``: override the spec's bars for drafts still to
      come (``None`` keeps the spec's value).
    """

    def __init__(
        self,
        *,
        review: bool = False,
        novelty_threshold: float | None = None,
        min_score: int | None = None,
    ):
        self._paused = threading.Event()
        self._stop = threading.Event()
        self.review = review
        self.novelty_threshold = novelty_threshold
        self.min_score = min_score

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def toggle_pause(self) -> bool:
        """Pause or resume; returns whether the run is now paused."""
        if self.paused:
            self.resume()
        else:
            self.pause()
        return self.paused

    def stop(self) -> None:
        self._stop.set()

    async def wait_while_paused(self) -> None:
        """Return once the run is resumed or asked to stop."""
        while self._paused.is_set() and not self._stop.is_set():
            await asyncio.sleep(POLL_SECONDS)

    def settings(self) -> dict[str, Any]:
        return {
            "paused": self.paused,
            "stopping": self.stopping,
            "review": self.review,
            "novelty_threshold": self.novelty_threshold,
            "min_score": self.min_score,
        }
