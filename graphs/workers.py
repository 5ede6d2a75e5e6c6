"""Draft work on Ray: ``personaloom run SPEC --workers N`` (or ``--ray-address ADDR``).

The streaming engine's coordinator (graphs/stream.py) stays the only planner and the only
committer: it plans each draft, sends it to the least busy of N Ray actors, and commits the
outcomes in draft order as on one process. An actor runs the per-draft subgraph
(graphs/drafting.py: write, critique, embedding, the novelty pre-check against the run's
Chroma server) with its own LLM client, reply cache and embedder, and writes nothing to the
run directory: the calls and events it recorded come back with the outcome, and the
coordinator puts them into traces.sqlite and the budget.

What an actor's draft may see is what it would see on one process (graphs/window.py): the
samples of drafts below the draft's horizon, in the run's Chroma server, which the
coordinator writes each accepted sample to as it commits it; later drafts' samples are
hidden by their number. Every draft below the horizon is committed before the draft is sent,
and each send carries the openings accepted since the actor's last one, so the opening gate
sees what it would on one process too. The coordinator's commit checks every accepted draft
again against everything committed, so no near-duplicate pair gets in whatever an actor saw.

An actor that dies (its process killed, its node gone) is restarted by Ray; the drafts it had
are sent again, under the same draft numbers, to whichever actor is free: the reply cache
answers the calls the lost actor had made, so nothing is lost, paid twice or written twice.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personaloom import records
from personaloom.endpoints import ConfigError, Overrides
from personaloom.events import EventKind, EventSink
from personaloom.graphs.state import DraftOutcome, DraftTask
from personaloom.graphs.window import HiddenFrom
from personaloom.llm import LLM, Budget, Endpoint
from personaloom.prices import Prices
from personaloom.prompts import PromptTemplate
from personaloom.spec import Spec
from personaloom.traces import CallRecord

if TYPE_CHECKING:
    from personaloom.graphs.context import Context

RAY_EXTRA = "pip install 'personaloom[ray]'"
LOSSES_PER_DRAFT = 5  # a draft whose actors died this often in a row ends the run
STATS_SECONDS = 1.0  # how often the ``workers`` event goes out


@contextlib.contextmanager
def _streams_with_descriptors() -> Iterator[None]:
    """Ray's start needs sys.stdout and sys.stderr to be real files (it hands their
    descriptors on); the dashboard replaces them with its own. Meanwhile they go to
    /dev/null, so nothing Ray prints reaches the dashboard's screen either."""
    saved = sys.stdout, sys.stderr
    devnull = None
    try:
        for name in ("stdout", "stderr"):
            try:
                usable = getattr(sys, name).fileno() >= 0
            except (AttributeError, OSError, ValueError):
                usable = False
            if not usable:
                devnull = devnull or open(os.devnull, "w")  # noqa: SIM115 - closed below
                setattr(sys, name, devnull)
        yield
    finally:
        sys.stdout, sys.stderr = saved
        if devnull is not None:
            devnull.close()


def ray_module() -> Any:
    """Ray, or a ConfigError naming the extra that brings it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"--workers and --ray-address run the drafts on Ray, which is not installed: "
            f"{RAY_EXTRA}"
        ) from None
    return ray


# -- what an actor knows of the accepted samples ----------------------------------------------


class View:
    """An actor's copy of the accepted samples' openings, in commit (= draft) order: (draft
    number, id, opening). The samples accepted before this session have number -1: drafts
    see them all, as on one process. Stands in for the Dispatcher as ``ctx.window``."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.seqs: list[int] = []
        self.starts: list[str] = []
        self.prior: set[str] = set()
        self.openings: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.seqs)

    def apply(self, base: int, entries: list[tuple[int, str, str]]) -> bool:
        """Add ``entries``, the coordinator's log from position ``base``; False when entries
        before ``base`` are missing here (a restarted actor): send the whole log."""
        if base > len(self):
            return False
        for seq, id_, start in entries[len(self) - base :]:
            self.seqs.append(seq)
            self.starts.append(start)
            self.openings[start] += 1
            if seq < 0:
                self.prior.add(id_)
        return True

    def hidden(self, horizon: int) -> HiddenFrom:
        return HiddenFrom(self.prior, horizon, self.concurrency)

    def hidden_openings(self, horizon: int) -> Counter[str]:
        return Counter(self.starts[bisect.bisect_left(self.seqs, horizon) :])


# -- the actor ------------------------------------------------------------------------------


@dataclass
class WorkerSetup:
    """Everything an actor needs to build its own context (sent once, when it starts)."""

    spec: Spec
    endpoints: dict[str, Endpoint]
    overrides: Overrides
    store_url: str
    store_prefix: str
    templates: dict[str, PromptTemplate]
    vocabulary: dict[str, list[str]]
    concurrency: int
    cache_root: str | None = None  # the coordinator's reply cache folder
    # novelty.memory on a Chroma server: (name, server URL, run key, run directory)
    memory: tuple[str, str, str, str] | None = None


@dataclass
class Captured:
    """What one draft recorded in an actor: LLM calls and events, for the coordinator."""

    calls: list[CallRecord] = field(default_factory=list)
    events: list[tuple[EventKind, dict[str, Any]]] = field(default_factory=list)


_CAPTURE: contextvars.ContextVar[Captured] = contextvars.ContextVar("personaloom_capture")


class _CaptureTraces:
    """Stands in for the trace store in an actor: records go to the running draft's
    ``Captured`` (a context variable, so concurrent drafts keep theirs apart)."""

    def record_call(self, call: CallRecord) -> int:
        _CAPTURE.get().calls.append(call)
        return 0

    def record_event(
        self,
        kind: EventKind,
        data: dict[str, Any],
        *,
        sample_id: str | None = None,
        persona_id: str | None = None,
    ) -> None:
        _CAPTURE.get().events.append((kind, data))


class _Personas:
    """The actor's ``ctx.store``: the personas of the drafts it was given, and nothing written
    (the coordinator sends no draft that the run directory already holds)."""

    def __init__(self) -> None:
        self.persona_by_id: dict[str, dict[str, Any]] = {}

    def written(self, draft_id: str) -> bool:
        return False


@dataclass
class Reply:
    outcome: DraftOutcome | None  # None: the actor's view was behind, send the whole log
    captured: Captured
    pid: int


class DraftWorker:
    """One Ray actor (``ray.remote`` is applied by ``WorkerPool``): drafts, concurrently."""

    def __init__(self, setup: WorkerSetup):
        self.setup = setup
        self.view = View(setup.spec.concurrency)
        self._ctx: Context | None = None
        self._ready: asyncio.Lock | None = None
        self._stack = AsyncExitStack()
        self._graph: Any = None

    async def _context(self) -> Context:
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._ctx is None:
                self._ctx = await self._build()
        return self._ctx

    async def _build(self) -> Context:
        from personaloom.avoid import load_avoid
        from personaloom.embeddings import aclose_embedder, make_embedder
        from personaloom.graphs.context import Context
        from personaloom.graphs.drafting import build_draft_graph
        from personaloom.llm.cache import open_cache
        from personaloom.memory import NoveltyMemory, _collections
        from personaloom.vectors import NoveltyIndex

        setup, stack = self.setup, self._stack
        spec = setup.spec
        cache = open_cache(spec, stack, Path(setup.cache_root) if setup.cache_root else None)
        traces: Any = _CaptureTraces()
        llm = LLM(
            setup.endpoints,
            traces=traces,
            budget=Budget(prices=Prices.of(spec)),  # the coordinator's budget decides
            cache=cache,
            concurrency=setup.concurrency,
        )
        stack.push_async_callback(llm.aclose)
        embedder = make_embedder(spec, setup.overrides, setup.endpoints, cache)
        stack.push_async_callback(aclose_embedder, embedder)
        index = await asyncio.to_thread(
            NoveltyIndex, url=setup.store_url, prefix=setup.store_prefix
        )
        memory = None
        if setup.memory is not None:
            name, url, run_key, run_dir = setup.memory
            shared = NoveltyIndex(url=url, collections=_collections(name))
            memory = NoveltyMemory(name, shared, run_key, Path(run_dir), f"on {url}")
        ctx = Context(
            spec=spec,
            store=_Personas(),  # type: ignore[arg-type]
            llm=llm,
            embedder=embedder,
            index=index,
            corpus=None,  # type: ignore[arg-type]  # drafts read no corpus
            events=EventSink(traces),
            templates=setup.templates,
            vocabulary=setup.vocabulary,
            avoid=await asyncio.to_thread(load_avoid, spec),
            memory=memory,
        )
        ctx.window, ctx.openings = self.view, self.view.openings
        self._graph = build_draft_graph().compile(checkpointer=False)
        return ctx

    async def draft(
        self,
        task: DraftTask,
        persona: dict[str, Any],
        base: int,
        entries: list[tuple[int, str, str]],
        controls: dict[str, Any],
    ) -> Reply:
        captured = Captured()
        if not self.view.apply(base, entries):
            return Reply(None, captured, os.getpid())
        ctx = await self._context()
        ctx.store.persona_by_id[task.persona_id] = persona
        ctx.control.min_score = controls.get("min_score")
        ctx.control.novelty_threshold = controls.get("novelty_threshold")
        _CAPTURE.set(captured)
        result = await self._graph.ainvoke({"task": task}, context=ctx)
        ctx.store.persona_by_id.pop(task.persona_id, None)
        return Reply(result["outcomes"][0], captured, os.getpid())

    async def ready(self) -> dict[str, Any]:
        """Build the context and load the embedding model (before the run starts, so a bad
        setting fails there and the first drafts do not wait for MiniLM); this actor's
        process and Ray node."""
        import ray

        ctx = await self._context()
        embedder = getattr(ctx.embedder, "inner", ctx.embedder)  # under the cache
        if hasattr(embedder, "warm"):
            await asyncio.to_thread(embedder.warm)
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    async def close(self) -> None:
        await self._stack.aclose()
        if self._ctx is not None:
            self._ctx.index.close()


# -- the coordinator's side ------------------------------------------------------------------


@dataclass
class _Worker:
    number: int
    actor: Any
    sent: int = 0  # entries of the log this actor has been sent (0 again after a loss)
    in_flight: int = 0
    done: int = 0
    accepted: int = 0
    lost: int = 0
    pid: int | None = None
    alive: bool = True
    started: float = field(default_factory=time.monotonic)

    def stats(self, now: float) -> dict[str, Any]:
        seconds = max(now - self.started, 1e-9)
        return {
            "worker": self.number,
            "pid": self.pid,
            "alive": self.alive,
            "in_flight": self.in_flight,
            "drafts": self.done,
            "accepted": self.accepted,
            "samples_per_s": round(self.accepted / seconds, 3),
            "lost": self.lost,
        }


class WorkerPool:
    """N draft actors on a Ray cluster (started here on 127.0.0.1, or joined at
    ``address``), and the log of accepted samples their views are kept up to date from."""

    def __init__(
        self,
        setup: WorkerSetup,
        workers: int,
        ctx: Context,
        *,
        address: str | None = None,
    ):
        self.ray = ray_module()
        self.ctx = ctx
        self._owns_cluster = False
        # RAY_ADDRESS in the environment is Ray's own way to join a cluster.
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        started = time.perf_counter()
        with _streams_with_descriptors():
            places = self._start(setup, workers)
        self.startup_s = time.perf_counter() - started
        # Accepted samples in commit order; those of earlier sessions first, as number -1.
        self.log: list[tuple[int, str, str]] = [
            (-1, row["id"], records.opening(ctx.spec, row["output"]))
            for row in ctx.store.dataset.rows
        ]
        self._logged = {id_ for _, id_, _ in self.log}
        self._last_stats = 0.0
        ctx.events.emit(
            "workers_started",
            workers=workers,
            address=self.address,
            startup_s=round(self.startup_s, 2),
            pids=[place["pid"] for place in places],
            nodes=[place["node"] for place in places],
        )

    def _start(self, setup: WorkerSetup, workers: int) -> list[dict[str, Any]]:
        """Ray (unless running already), then the actors, ready: their processes and nodes."""
        if not self.ray.is_initialized():
            # Ray's own log lines (its start, a warning that a thread cannot set its signal
            # handler, token authentication on) would cut through the progress bar.
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.ERROR,
            }
            if self.address is None:  # a cluster of our own, on this machine's loopback only
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                options["num_cpus"] = max(workers, os.cpu_count() or 1)
                options["_node_ip_address"] = "127.0.0.1"
                self._owns_cluster = True
            self.ray.init(address=self.address, **options)
        remote = self.ray.remote(DraftWorker).options(
            num_cpus=1,
            max_restarts=-1,  # Ray brings a dead actor back; its drafts are sent again
            max_task_retries=0,
            max_concurrency=max(1, setup.concurrency),
        )
        self.workers = [_Worker(n, remote.remote(setup)) for n in range(workers)]
        places: list[dict[str, Any]] = self.ray.get([w.actor.ready.remote() for w in self.workers])
        for worker, place in zip(self.workers, places, strict=True):
            worker.pid = place["pid"]
        return places

    def committed(self, seq: int, sample_id: str, start: str) -> None:
        """An accepted sample was written (the coordinator calls this in commit order; a
        resumed run's drafts already written before the kill are in the log already)."""
        if sample_id not in self._logged:
            self._logged.add(sample_id)
            self.log.append((seq, sample_id, start))

    def _pick(self) -> _Worker:
        return min(self.workers, key=lambda w: (w.in_flight, w.number))

    async def draft(self, task: DraftTask) -> DraftOutcome:
        """Run ``task`` on a worker; its calls and events replayed here, in this process."""
        ctx = self.ctx
        persona = ctx.store.persona_by_id[task.persona_id]
        controls = {
            "min_score": ctx.control.min_score,
            "novelty_threshold": ctx.control.novelty_threshold,
        }
        losses = 0
        while True:
            worker = self._pick()
            base = worker.sent
            entries = self.log[base:]
            worker.sent = len(self.log)
            worker.in_flight += 1
            try:
                reply = await worker.actor.draft.remote(task, persona, base, entries, controls)
            except self.ray.exceptions.RayActorError as exc:
                losses += 1
                self._lost(worker, task, exc)
                if losses >= LOSSES_PER_DRAFT:
                    raise RuntimeError(
                        f"draft {task.draft_id} was lost with its worker {losses} times in a "
                        f"row; the last: {exc}"
                    ) from None
                continue
            finally:
                worker.in_flight -= 1
            worker.pid = reply.pid
            if reply.outcome is None:  # a restarted actor: it needs the whole log
                worker.sent = 0
                continue
            self._replay(reply.captured)
            worker.done += 1
            worker.accepted += reply.outcome.status == "accepted"
            self._stats()
            return reply.outcome

    def _lost(self, worker: _Worker, task: DraftTask, exc: Exception) -> None:
        worker.sent, worker.lost = 0, worker.lost + 1
        self.ctx.events.emit(
            "worker_lost",
            worker=worker.number,
            pid=worker.pid,
            sample_id=task.draft_id,
            error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        )
        self._stats(force=True)

    def _replay(self, captured: Captured) -> None:
        ctx = self.ctx
        for call in captured.calls:
            ctx.llm.traces.record_call(call)
            ctx.llm.budget.absorb(call)
        for kind, data in captured.events:
            ctx.events.record(kind, **data)

    def _stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_stats < STATS_SECONDS:
            return
        self._last_stats = now
        self.ctx.events.emit("workers", workers=[w.stats(now) for w in self.workers])

    def shutdown(self) -> None:
        self._stats(force=True)
        try:
            self.ray.get([w.actor.close.remote() for w in self.workers], timeout=30)
        except Exception:  # noqa: BLE001 - an actor already gone has nothing to close
            pass
        for worker in self.workers:
            self.ray.kill(worker.actor, no_restart=True)
        if self._owns_cluster:
            with _streams_with_descriptors():
                self.ray.shutdown()
