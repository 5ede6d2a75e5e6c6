"""The personaloom dashboard: a supervised run (``personaloom tui``) or a watched one
(``personaloom watch``), with the same screens either way.

Nothing slow runs on the UI thread. A supervised run's graph runs in a thread worker on its
own event loop (``live.LiveRun``); a watched run's events are read from its trace store by
another thread worker; a third re-reads the run directory for exact counts. They reach the
UI only by posting messages (``messages.py``), and the UI folds events into ``RunState``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.signal import Signal

from personaloom.control import RunControl
from personaloom.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from personaloom.tui.messages import (
    EventsArrived,
    Notice,
    ReviewRequested,
    RunEnded,
    ViewFailed,
    ViewLoaded,
)
from personaloom.tui.screens.bars import BarsScreen
from personaloom.tui.screens.dashboard import DashboardScreen
from personaloom.tui.screens.help import HelpScreen
from personaloom.tui.screens.personas import PersonasScreen
from personaloom.tui.screens.review import ReviewScreen
from personaloom.tui.screens.sample import SampleScreen
from personaloom.tui.screens.samples import SamplesScreen
from personaloom.tui.screens.traces import TracesScreen
from personaloom.tui.state import RunState
from personaloom.tui.view import EventTail, NotReady, RunView, ViewLoader
from personaloom.tui.widgets.counters import Bars

FOLD_BUDGET = 0.02  # seconds of event folding per message, so keys never wait behind a backlog
REPAINT = 0.1  # seconds between two activity repaints, however fast events come
MIN_RELOAD = 0.3  # seconds between two reads of the run directory, at the least
RELOAD = 1.0  # seconds between reads when nothing asks for one
CONTROLS = ("pause", "stop", "review", "bars")


class PersonaloomApp(App[int]):
    """``PersonaloomApp(spec=...)`` supervises a new run, ``resume=RUN_DIR`` continues one,
    ``watch=RUN_DIR`` follows one read-only. ``clock`` is injectable for snapshot tests."""

    TITLE = "personaloom"
    CSS_PATH = "app.tcss"
    MODES = {
        "dashboard": DashboardScreen,
        "personas": PersonasScreen,
        "samples": SamplesScreen,
        "traces": TracesScreen,
    }
    DEFAULT_MODE = "dashboard"
    BINDINGS = [
        Binding("1", "switch_mode('dashboard')", "Dashboard"),
        Binding("2", "switch_mode('personas')", "Personas"),
        Binding("3", "switch_mode('samples')", "Samples"),
        Binding("4", "switch_mode('traces')", "Traces"),
        Binding("p", "pause", "Pause/Resume"),
        Binding("s", "stop", "Stop"),
        Binding("v", "review", "Review"),
        Binding("b", "bars", "Bars"),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        *,
        spec: Path | None = None,
        out: Path | None = None,
        resume: Path | None = None,
        watch: Path | None = None,
        overrides: Any = None,
        review: bool = False,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        self.clock = clock
        self.state = RunState()
        self.view: RunView | None = None
        self.view_error: str | None = None
        self.overrides = overrides
        self.control: RunControl | None = None
        self.live: Any = None  # personaloom.tui.live.LiveRun when supervising
        self.result: Any = None  # the RunResult once the supervised run returned
        self.error: str | None = None  # why the supervised run failed, if it did
        self.exit_code = EXIT_OK
        self.view_changed: Signal[RunView] = Signal(self, "view_changed")
        self.activity_changed: Signal[None] = Signal(self, "activity_changed")
        self._pending: deque[dict[str, Any]] = deque()
        self._wake_posted = threading.Event()
        self._view_wake = threading.Event()
        self._shutting_down = threading.Event()
        self._run_over = threading.Event()
        self._run_done = threading.Event()
        self._quitting = False
        self._ended = False  # the UI has handled RunEnded (set on the UI thread)
        self._repaint_due = False  # an activity repaint is scheduled
        self.watching = watch
        self.run_dir: Path | None = watch or resume
        if watch is None:
            self.control = RunControl(review=review)
            from personaloom.tui.live import LiveRun  # the graph stack, only when supervising

            self.live = LiveRun(
                spec,
                out=out,
                resume=resume,
                overrides=overrides,
                control=self.control,
                events=self._pending,
                wake=self._wake,
                on_review=lambda samples, decided: self.post_message(
                    ReviewRequested(samples, decided)
                ),
                notice=lambda text: self.post_message(Notice(text)),
            )
        else:
            self._run_done.set()

    # lifecycle
    def on_mount(self) -> None:
        self.sub_title = f"watching {self.watching} (read-only)" if self.watching else "starting…"
        if self.watching is not None:
            self._follow(self.watching)
            self._load_views(self.watching)
        else:
            self._run_graph()
        self.set_interval(1.0, self._tick)

    async def on_unmount(self) -> None:
        self._shutting_down.set()
        self._view_wake.set()
        if self.live is not None and not self._run_done.is_set():
            self.live.cancel()  # never leave the graph (and the embedded model) running
            await asyncio.to_thread(self._run_done.wait, 60)

    @property
    def supervising(self) -> bool:
        return self.live is not None

    @property
    def run_active(self) -> bool:
        """A supervised run whose end the UI has not handled yet."""
        return self.live is not None and not self._ended

    def run_status(self) -> str:
        """running, paused, stopping, review, or the run's final status."""
        if self.run_active and self.control is not None:
            if self.state.review_pending:
                return "review"
            if self.control.stopping:
                return "stopping"
            if self.control.paused:
                return "paused"
        status = self.state.status
        if status == "starting" and self.view is not None:
            status = self.view.meta.get("status", status)
        return status

    def bars(self) -> Bars | None:
        """The bars drafts still to come are judged by (supervised runs only)."""
        if self.control is None or self.view is None:
            return None
        spec = self.view.spec
        control = self.control
        return Bars(
            novelty=spec.novelty.threshold
            if control.novelty_threshold is None
            else control.novelty_threshold,
            novelty_changed=control.novelty_threshold is not None,
            min_score=spec.critic.min_score if control.min_score is None else control.min_score,
            min_score_changed=control.min_score is not None,
            review=control.review,
        )

    def _tick(self) -> None:
        """Once a second: durations and rates move on even when no event arrives."""
        self.activity_changed.publish(None)

    # workers
    @work(thread=True, exit_on_error=False, group="run", name="graph")
    async def _run_graph(self) -> None:
        """The supervised run, on this worker thread's own event loop."""
        try:
            result = await self.live.run()
        except asyncio.CancelledError:
            self.post_message(RunEnded(None, interrupted=True))
        except Exception as exc:  # noqa: BLE001 - shown on the dashboard, not a crash
            self.post_message(RunEnded(None, error=f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(RunEnded(result))
        finally:
            self._run_over.set()
            self._view_wake.set()
            self._run_done.set()

    @work(thread=True, exit_on_error=False, group="follow", name="event follower")
    def _follow(self, run_dir: Path) -> None:
        """``watch``: the run's events, read from its trace store as they are written."""
        tail = EventTail(run_dir)
        try:
            while not self._shutting_down.is_set():
                batch = tail.read(2000)
                if batch:
                    self._pending.extend(batch)
                    self._wake()
                if len(batch) < 2000:
                    self._shutting_down.wait(0.25)
        finally:
            tail.close()

    @work(thread=True, exit_on_error=False, group="view", name="run directory reader")
    def _load_views(self, run_dir: Path) -> None:
        """Re-read the run directory: at once when events say it changed, else every
        second; never more often than five times what a read costs."""
        loader: ViewLoader | None = None
        try:
            while not self._shutting_down.is_set():
                final = self._run_over.is_set()
                took, pause = 0.0, RELOAD
                try:
                    loader = loader or ViewLoader(run_dir)
                    view = loader.load()
                    self.post_message(ViewLoaded(view))
                    took = view.load_seconds
                except NotReady:
                    pause = 0.5
                except Exception as exc:  # noqa: BLE001 - a damaged file: say so, retry
                    self.post_message(ViewFailed(f"{type(exc).__name__}: {exc}"))
                    pause = 2.0
                if final and self.supervising:
                    return  # the run is over: this read saw its last state
                gap = max(MIN_RELOAD, 5 * took)
                self._shutting_down.wait(gap)
                self._view_wake.wait(max(0.0, max(pause, 5 * took) - gap))
                self._view_wake.clear()
        finally:
            if loader is not None:
                loader.close()

    def _wake(self) -> None:
        """Any thread: events are queued; post one wake-up unless one is pending."""
        if not self._wake_posted.is_set():
            self._wake_posted.set()
            self.post_message(EventsArrived())

    # messages
    def on_events_arrived(self, message: EventsArrived) -> None:
        self._wake_posted.clear()  # before draining: a later event posts a new wake-up
        deadline = time.perf_counter() + FOLD_BUDGET
        while self._pending:
            event = self._pending.popleft()
            self.state.apply(event)
            kind = event.get("event")
            if kind == "run_started" and self.view is None and self.watching is None:
                self.run_dir = Path(event["run_dir"])
                self.sub_title = str(self.run_dir)
                self._load_views(self.run_dir)
            elif kind in ("sample_accepted", "sample_rejected", "personas", "run_finished"):
                self._view_wake.set()
            if time.perf_counter() > deadline:
                self._wake()  # the rest after the keys and repaints waiting now
                break
        self._schedule_repaint()

    def _schedule_repaint(self) -> None:
        """Repaint what events changed at most every ``REPAINT`` seconds: a graph can emit
        hundreds of node events a second, and a key press must not queue behind them."""
        if not self._repaint_due:
            self._repaint_due = True
            self.set_timer(REPAINT, self._repaint)

    def _repaint(self) -> None:
        self._repaint_due = False
        self.activity_changed.publish(None)

    def on_view_loaded(self, message: ViewLoaded) -> None:
        self.view, self.view_error = message.view, None
        self.view_changed.publish(message.view)
        self.activity_changed.publish(None)

    def on_view_failed(self, message: ViewFailed) -> None:
        if message.error != self.view_error:
            self.view_error = message.error
            self.notify(message.error, title="cannot read the run directory", severity="error")

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, title="personaloom", timeout=8)

    def on_review_requested(self, message: ReviewRequested) -> None:
        decided = message.decided

        def answer(decisions: dict[str, bool] | None) -> None:
            if not decided.done():
                decided.set_result(decisions or {})

        self.push_screen(ReviewScreen(message.samples), answer)

    def on_run_ended(self, message: RunEnded) -> None:
        self._ended = True
        self.result = message.result
        if message.result is not None:
            self.exit_code = message.result.exit_code
            self.notify(f"run finished: {message.result.status}", timeout=10)
        elif message.interrupted:
            self.exit_code = EXIT_INTERRUPTED
        else:
            self.exit_code, self.error = EXIT_ERROR, message.error or "failed"
            self.notify(self.error, title="the run failed", severity="error", timeout=30)
        self.refresh_bindings()
        self.activity_changed.publish(None)
        if self._quitting:
            self.exit(self.exit_code)

    # actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in CONTROLS:
            if not self.supervising:
                return False  # watching is read-only: the controls are not shown
            return True if self.run_active else None
        return True

    def action_pause(self) -> None:
        if self.control is None or not self.run_active:
            return
        paused = self.control.toggle_pause()
        self.notify("paused: drafts in flight finish" if paused else "resumed")
        self.activity_changed.publish(None)

    def action_stop(self) -> None:
        if self.control is None or not self.run_active or self.control.stopping:
            return
        self.control.stop()
        self.notify("stopping: drafts in flight finish, then a resumable checkpoint")
        self.activity_changed.publish(None)

    def action_review(self) -> None:
        if self.control is None or not self.run_active:
            return
        self.control.review = not self.control.review
        if self.control.review:
            self.notify("review on: approve or reject each accepted sample before it counts")
        else:
            self.notify("review off")
        self.activity_changed.publish(None)

    def action_bars(self) -> None:
        if self.control is None or self.view is None or not self.run_active:
            return
        control, spec = self.control, self.view.spec

        def apply(values: tuple[float | None, int | None] | None) -> None:
            if values is None:
                return
            control.novelty_threshold, control.min_score = values
            self.notify("new bars apply to drafts still to come")
            self.activity_changed.publish(None)

        self.push_screen(
            BarsScreen(
                novelty=control.novelty_threshold,
                min_score=control.min_score,
                spec_novelty=spec.novelty.threshold,
                spec_min_score=spec.critic.min_score,
            ),
            apply,
        )

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Quit now. A run still going is cut short, resumably: ``arun`` checkpoints and
        writes ``run.json``; the app exits when the graph's thread has ended."""
        if self.run_active:
            if not self._quitting:
                self._quitting = True
                self.notify(
                    "cutting the run short: the app closes once it has written its"
                    " checkpoint and stopped its model (resume it with --resume)",
                    timeout=30,
                )
                self.live.cancel()
            return
        self.exit(self.exit_code)

    # navigation used by screens
    def open_sample(self, sample_id: str) -> None:
        self.push_screen(SampleScreen(sample_id))

    async def show_samples(self, **filters: str | None) -> None:
        """The Samples screen with these filters (``trait``, ``status``, ``reason``)."""
        await self.switch_mode("samples")
        screen = self.screen
        if isinstance(screen, SamplesScreen):
            screen.set_filters(**filters)
