"""What the dashboard knows about a run between two reads of its files, folded from events.

Both ways of watching feed the same fold: a supervised run's event listeners (``tui``) and the
trace store's ``events`` table read incrementally (``watch``), which holds the same events.
Counts that must be exact (accepted, calls, tokens) come from the run's files instead (see
``view.py``); this fold keeps what only the event stream has: what each agent is doing now,
the live feed, and the acceptance rate. Plain Python, so it is tested without Textual.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The graph node an agent works in. ``mine_personas`` runs both Text-to-Persona and
# Persona-to-Persona; the events that follow (``persona_added`` with its depth) tell them apart.
AGENTS = ("planner", "personas", "writer", "critic", "novelty")
NODE_AGENT = {
    "plan": "planner",
    "commit": "planner",
    "mine_personas": "personas",
    "write": "writer",
    "critique": "critic",
    "check_novelty": "novelty",
}
FEED_SIZE = 300
RATE_WINDOW = 300.0  # seconds of accepted samples the rate is measured over


@dataclass(frozen=True)
class FeedItem:
    """One line of the live feed: an outcome written by ``commit``, or a coverage warning."""

    ts: float
    kind: str  # accepted | rejected | aborted | stagnant | review
    sample_id: str | None
    traits: dict[str, str]
    detail: str


@dataclass(frozen=True)
class AgentLine:
    """What one agent is doing: the drafts it works on now, or the last thing it did."""

    agent: str
    busy: tuple[str, ...]  # sample ids (or "-" for node runs without one)
    since: float | None  # when the oldest current work started
    last: str  # the last finished step, as text


@dataclass(frozen=True)
class Pace:
    """Accepted samples per minute and the time the remaining ones take at that rate."""

    per_minute: float | None
    remaining: int | None
    eta_seconds: float | None


@dataclass
class RunState:
    """The fold. ``apply`` one event dict (``{"event": kind, "ts": ..., ...}``) at a time."""

    status: str = "starting"
    run_dir: str | None = None
    session_start: float | None = None
    finished_at: float | None = None
    remaining: int | None = None
    round: int | None = None
    pool: int | None = None
    workers: tuple[dict[str, Any], ...] = ()  # Ray workers (--workers): the latest stats
    review_pending: tuple[str, ...] = ()
    session_accepted: int = 0
    session_rejected: int = 0
    events_seen: int = 0
    feed_total: int = 0  # feed items ever added: a reader shows the last (total - seen)
    last_event_ts: float | None = None
    feed: deque[FeedItem] = field(default_factory=lambda: deque(maxlen=FEED_SIZE))
    _accept_times: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    _active: dict[str, dict[tuple[str, str], float]] = field(
        default_factory=lambda: {agent: {} for agent in AGENTS}
    )
    _last: dict[str, str] = field(default_factory=lambda: {agent: "" for agent in AGENTS})

    def apply(self, event: dict[str, Any]) -> FeedItem | None:
        """Fold one event; returns the feed item it added, if any."""
        kind, ts = event.get("event"), float(event.get("ts") or 0.0)
        self.events_seen += 1
        self.last_event_ts = ts
        handler = HANDLERS.get(kind) if isinstance(kind, str) else None
        item = handler(self, event, ts) if handler else None
        if item is not None:
            self.feed.append(item)
            self.feed_total += 1
        return item

    # run lifecycle
    def _on_run_started(self, event: dict[str, Any], ts: float) -> None:
        self.status, self.run_dir = "running", event.get("run_dir")
        self.session_start, self.finished_at = ts, None
        self.session_accepted = self.session_rejected = 0
        self._accept_times.clear()
        for active in self._active.values():
            active.clear()

    def _on_run_finished(self, event: dict[str, Any], ts: float) -> None:
        self.status, self.finished_at = event.get("status") or "finished", ts
        self.review_pending = ()
        for active in self._active.values():
            active.clear()  # a cancelled run records no node_end for what it cut short

    def _on_batch(self, event: dict[str, Any], ts: float) -> None:
        self.remaining, self.round = event.get("remaining"), event.get("round")
        drafts = event.get("drafts")
        self._last["planner"] = f"round {self.round}: {_count(drafts, 'draft')} assigned"

    def _on_review_requested(self, event: dict[str, Any], ts: float) -> FeedItem:
        self.review_pending = tuple(event.get("samples") or ())
        waiting = _count(len(self.review_pending), "sample")
        return FeedItem(ts, "review", None, {}, f"{waiting} to review")

    def _on_review_done(self, event: dict[str, Any], ts: float) -> None:
        self.review_pending = ()

    # outcomes
    def _on_sample_accepted(self, event: dict[str, Any], ts: float) -> FeedItem:
        self.session_accepted += 1
        self._accept_times.append(ts)
        if event.get("remaining") is not None:
            self.remaining = event["remaining"]
        score = event.get("score")
        detail = f"score {score}" if score is not None else ""
        return FeedItem(ts, "accepted", event.get("sample_id"), event.get("traits") or {}, detail)

    def _on_sample_rejected(self, event: dict[str, Any], ts: float) -> FeedItem:
        self.session_rejected += 1
        reason, details = event.get("reason") or "?", (event.get("details") or "").strip()
        detail = f"{reason}: {details}" if details else reason
        return FeedItem(ts, "rejected", event.get("sample_id"), event.get("traits") or {}, detail)

    def _on_draft_aborted(self, event: dict[str, Any], ts: float) -> FeedItem:
        detail = f"aborted: {event.get('reason') or 'budget'}"
        return FeedItem(ts, "aborted", event.get("sample_id"), {}, detail)

    def _on_stagnant(self, event: dict[str, Any], ts: float) -> FeedItem:
        trait, value = event.get("trait"), event.get("value")
        given_up = " (given up)" if event.get("given_up") else ""
        detail = (
            f"{trait}={value} stagnates after {event.get('attempts')} drafts, "
            f"mostly {event.get('reason')}{given_up}"
        )
        return FeedItem(ts, "stagnant", None, {}, detail)

    # agents
    def _on_node_start(self, event: dict[str, Any], ts: float) -> None:
        agent = NODE_AGENT.get(event.get("node") or "")
        if agent:
            key = (event["node"], event.get("sample_id") or "-")
            self._active[agent][key] = ts

    def _on_node_end(self, event: dict[str, Any], ts: float) -> None:
        node = event.get("node") or ""
        agent = NODE_AGENT.get(node)
        if not agent:
            return
        sample = event.get("sample_id") or "-"
        self._active[agent].pop((node, sample), None)
        failed = "" if event.get("ok", True) else " failed"
        if agent == "writer" or not self._last[agent]:  # the others have richer events
            ms = event.get("ms")
            took = f" in {_duration(ms / 1000)}" if isinstance(ms, int | float) else ""
            target = f"{sample} " if sample != "-" else ""
            self._last[agent] = f"{target}{node}{failed}{took}"

    def _on_verdict(self, event: dict[str, Any], ts: float) -> None:
        verdict, reason = event.get("verdict"), event.get("reason")
        score = event.get("score")
        why = f" {reason}" if reason else ""
        scored = f" (score {score})" if score is not None else ""
        self._last["critic"] = f"{event.get('sample_id')} {verdict}{why}{scored}"

    def _on_novelty(self, event: dict[str, Any], ts: float) -> None:
        nearest = event.get("neighbour_id")
        if nearest is None:
            text = "nothing accepted yet to compare with"
        else:
            flag = " duplicate" if event.get("duplicate") else ""
            text = f"nearest {nearest} at {event.get('similarity')}{flag}"
        self._last["novelty"] = f"{event.get('sample_id')} {text}"

    # Ray workers (--workers)
    def _on_workers_started(self, event: dict[str, Any], ts: float) -> None:
        self.workers = tuple(
            {"worker": n, "pid": pid, "alive": True, "in_flight": 0, "samples_per_s": 0.0}
            for n, pid in enumerate(event.get("pids") or ())
        )

    def _on_workers(self, event: dict[str, Any], ts: float) -> None:
        self.workers = tuple(event.get("workers") or ())

    def _on_worker_lost(self, event: dict[str, Any], ts: float) -> FeedItem:
        detail = (
            f"worker {event.get('worker')} (pid {event.get('pid')}) lost: "
            f"draft sent again ({event.get('error')})"
        )
        return FeedItem(ts, "aborted", event.get("sample_id"), {}, detail)

    def _on_personas(self, event: dict[str, Any], ts: float) -> None:
        self.pool = event.get("pool")
        done = ", nothing left to mine" if event.get("exhausted") else ""
        self._last["personas"] = f"+{event.get('added')} (pool {self.pool}){done}"

    def _on_persona_mining_failed(self, event: dict[str, Any], ts: float) -> FeedItem:
        return FeedItem(ts, "rejected", None, {}, f"mining {event.get('text_id')} failed")

    def _on_persona_relating_failed(self, event: dict[str, Any], ts: float) -> FeedItem:
        return FeedItem(ts, "rejected", None, {}, f"relating {event.get('persona_id')} failed")

    # derived views
    def feed_since(self, seen: int) -> list[FeedItem]:
        """Feed items added after the reader's count ``seen`` (at most the feed's size)."""
        new = min(self.feed_total - seen, len(self.feed))
        return list(self.feed)[len(self.feed) - new :] if new > 0 else []

    def agents(self) -> tuple[AgentLine, ...]:
        lines = []
        for agent in AGENTS:
            active = self._active[agent]
            busy = tuple(sorted({sample for _, sample in active}))
            since = min(active.values()) if active else None
            lines.append(AgentLine(agent, busy, since, self._last[agent]))
        return tuple(lines)

    def pace(self, now: float) -> Pace:
        """Rate over the last ``RATE_WINDOW`` seconds of this session (the whole session
        once it finished); the time left assumes that rate holds."""
        if self.session_start is None:
            return Pace(None, self.remaining, None)
        if self.finished_at is not None:
            span = self.finished_at - self.session_start
            count = self.session_accepted
        else:
            span = min(RATE_WINDOW, now - self.session_start)
            count = sum(1 for t in self._accept_times if t >= now - RATE_WINDOW)
        rate = count / (span / 60) if span >= 1 and count else None
        if self.remaining == 0:
            return Pace(rate, 0, 0.0)
        eta = None
        if rate and self.remaining is not None and self.finished_at is None:
            eta = self.remaining / rate * 60
        return Pace(rate, self.remaining, eta)


# Each event kind the fold uses, and its handler (personaloom.events.EventKind has them all;
# the others change nothing here).
HANDLERS: dict[str, Callable[[RunState, dict[str, Any], float], FeedItem | None]] = {
    "run_started": RunState._on_run_started,
    "run_finished": RunState._on_run_finished,
    "batch": RunState._on_batch,
    "review_requested": RunState._on_review_requested,
    "review_done": RunState._on_review_done,
    "sample_accepted": RunState._on_sample_accepted,
    "sample_rejected": RunState._on_sample_rejected,
    "draft_aborted": RunState._on_draft_aborted,
    "stagnant": RunState._on_stagnant,
    "node_start": RunState._on_node_start,
    "node_end": RunState._on_node_end,
    "verdict": RunState._on_verdict,
    "novelty": RunState._on_novelty,
    "workers_started": RunState._on_workers_started,
    "workers": RunState._on_workers,
    "worker_lost": RunState._on_worker_lost,
    "personas": RunState._on_personas,
    "persona_mining_failed": RunState._on_persona_mining_failed,
    "persona_relating_failed": RunState._on_persona_relating_failed,
}


def _count(n: int | None, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return format_eta(seconds)


def format_eta(seconds: float) -> str:
    """``42 s``, ``3 min``, ``1 h 05 min``: coarse on purpose, it is an estimate."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
