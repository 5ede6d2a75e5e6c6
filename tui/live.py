"""A supervised run: ``arun`` on a worker thread's own event loop, driven by a RunControl.

The dashboard's event loop must never wait for the graph: LLM calls, embeddings and Chroma
all run on this thread's loop, and the two sides meet only through thread-safe things: the
``RunControl`` flags, a deque of events, and a ``concurrent.futures.Future`` per review.
No Textual here: the app passes in the callbacks that post its messages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from personaloom.control import RunControl
from personaloom.endpoints import Overrides
from personaloom.runner import RunResult, arun
from personaloom.tui.view import EventTail

# What they return is not used (post_message's bool, say).
ReviewCallback = Callable[[list[dict[str, Any]], concurrent.futures.Future], object]
MODEL_NICENESS = 10  # the embedded model yields the CPU to the dashboard (see LocalModelServer)


class LiveRun:
    """Runs (or resumes) one spec; ``cancel()`` from any thread cuts it short, resumably."""

    def __init__(
        self,
        spec: Path | None,
        *,
        out: Path | None = None,
        resume: Path | None = None,
        overrides: Overrides | None = None,
        control: RunControl | None = None,
        events: deque[dict[str, Any]],
        wake: Callable[[], None],
        on_review: ReviewCallback,
        notice: Callable[[str], object],
    ):
        self.spec, self.out, self.resume = spec, out, resume
        self.overrides = overrides or Overrides()
        self.control = control or RunControl()
        self.events = events
        self.wake = wake
        self.on_review = on_review
        self.notice = notice
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._cancelled = False

    def listen(self, event: dict[str, Any]) -> None:
        """The run's listener, called on the graph's thread: cheap, never blocks."""
        self.events.append(event)
        self.wake()

    async def run(self) -> RunResult:
        """Await the run on the calling thread's event loop (the worker's, never the UI's)."""
        with self._lock:
            if self._cancelled:
                raise asyncio.CancelledError
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        if self.resume is not None:
            self._replay_history(self.resume)
        return await arun(
            self.spec,
            out=self.out,
            resume=self.resume,
            overrides=self.overrides,
            detail_listeners=[self.listen],
            control=self.control,
            reviewer=self._review,
            local_model_niceness=MODEL_NICENESS,
            notice=self.notice,
        )

    def cancel(self) -> None:
        """Cut the run short from any thread: drafts in flight are dropped (the checkpoint
        still holds their batch, so a resume redoes them) and ``arun`` writes the report and
        ``run.json`` with status ``interrupted`` on its way out."""
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)

    def _replay_history(self, run_dir: Path) -> None:
        """A resumed run's earlier events, so the feed and agents start where it was left."""
        tail = EventTail(run_dir)
        try:
            while batch := tail.read(5000):
                self.events.extend(batch)
        finally:
            tail.close()
        self.wake()

    async def _review(self, samples: list[dict[str, Any]]) -> dict[str, bool]:
        """The run's reviewer: hand the batch to the dashboard and wait for its decisions
        without blocking this loop (in-flight work keeps going; the graph waits)."""
        decided: concurrent.futures.Future[dict[str, bool]] = concurrent.futures.Future()
        self.on_review(samples, decided)
        return await asyncio.wrap_future(decided)
