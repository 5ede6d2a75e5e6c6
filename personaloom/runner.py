"""Run a spec end to end: ``run(spec)`` for scripts, used by ``personaloom run`` too.

Sets up the run directory, the endpoints (starting the embedded model when none is
configured), the cache, traces, embeddings and Chroma, compiles the graph with the SQLite
checkpointer in the run directory, and runs or resumes it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import yaml
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from personaloom.agents.models import DraftOutcome, DraftTask
from personaloom.avoid import AvoidSet, load_avoid
from personaloom.control import Reviewer, RunControl
from personaloom.corpus import Corpus
from personaloom.embeddings import Embedder, aclose_embedder, embed_all, make_embedder
from personaloom.endpoints import (
    ConfigError,
    Overrides,
    check_prices,
    resolve_endpoints,
    with_local,
)
from personaloom.errors import (  # noqa: F401 - re-exported for scripts
    EXIT_BUDGET,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STALLED,
    EXIT_USAGE,
    DiskFull,
    StoreUnavailable,
    disk_full,
)
from personaloom.estimate import budget_warning
from personaloom.events import EventSink, Listener
from personaloom.graphs import Context, build_graph
from personaloom.graphs.stream import Dispatcher, build_stream_graph
from personaloom.graphs.wiring import wire
from personaloom.llm import LLM, Budget, Endpoint
from personaloom.llm.cache import ReplyCache, cache_root, open_cache, public_url
from personaloom.memory import NoveltyMemory, open_memory
from personaloom.pool import PoolRead, load_pool
from personaloom.prices import Prices, total_cost
from personaloom.records import RejectReason, text_of
from personaloom.report import build_report, write_report
from personaloom.runlock import RunLock
from personaloom.spec import Spec, SpecError, load_spec
from personaloom.store import (
    CHECKPOINTS,
    CHROMA,
    CHROMA_SERVER_LOG,
    LOCAL_MODEL_LOG,
    RUN_JSON,
    SPEC_YAML,
    TRACES,
    RunStore,
    load_run,
    write_json_atomic,
)
from personaloom.traces import TraceStore
from personaloom.vectors import (
    AVOID,
    PERSONAS,
    SAMPLES,
    NoveltyIndex,
    connect,
    discard_clients,
    run_prefix,
)

_EXIT_CODES = {"complete": EXIT_OK, "budget": EXIT_BUDGET, "stalled": EXIT_STALLED}
RESUMABLE = ("running", "stopped")  # statuses a resume continues; the others are final
THREAD = {"configurable": {"thread_id": "generation"}, "recursion_limit": 1_000_000}
# Each engine keeps its own checkpoints: a run made by one continues on the other from the
# run directory, which both plan from.
THREADS = {"batch": THREAD, "stream": {**THREAD, "configurable": {"thread_id": "stream"}}}


@dataclass
class RunResult:
    run_dir: Path
    status: str
    stop_reason: str | None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES.get(self.status, EXIT_INTERRUPTED)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def new_run_dir(spec: Spec, out: Path | None) -> Path:
    """Where a new run of ``spec`` goes; nothing is created yet."""
    run_dir = out or Path("runs") / f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    _refuse_existing_run(run_dir)
    return run_dir


def _refuse_existing_run(run_dir: Path) -> None:
    if (run_dir / RUN_JSON).exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir}")


def _load_run(
    spec: Spec | str | Path | None, out: Path | None, resume: Path | None
) -> tuple[Spec, Path, dict]:
    """The spec, the run directory and the run's metadata; reads, writes nothing."""
    if resume is not None:
        frozen, meta = load_run(resume)
        if spec is not None:
            given = spec if isinstance(spec, Spec) else load_spec(spec)
            if given.frozen() != frozen.frozen():
                raise ConfigError(
                    f"the spec differs from the one {resume} was started with; "
                    "resume without changing it (or start a new run)"
                )
            return given, resume, meta  # the same design, with any inline keys it holds
        return frozen, resume, meta
    if spec is None:
        raise ConfigError("give a spec to run, or --resume RUN_DIR")
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    created = datetime.now().isoformat(timespec="seconds")
    meta = {
        "name": spec.name,
        "spec_dir": str(spec.base_dir.resolve()),
        "created": created,
        "elapsed_seconds": 0.0,
        "status": "running",
        "store_key": store_key(spec.name, created),
    }
    return spec, new_run_dir(spec, out), meta


def store_key(name: str, created: str) -> str:
    """The run's namespace on shared stores (its collections on a Chroma server, its ids in
    novelty memory): the spec's name, the creation time and a random part, so that runs of
    one spec started in the same second on two machines still differ. Recorded in run.json."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:40].strip("-_") or "run"
    return f"{safe}-{re.sub(r'[^0-9]', '', created)[:14]}-{secrets.token_hex(3)}"


def novelty_store(spec: Spec, overrides: Overrides, meta: dict) -> str | None:
    """The run's Chroma server, if any: ``--chroma-url``, else ``novelty.store``, else the
    server an earlier session of the run was pointed at (run.json's ``novelty_store``)."""
    return overrides.chroma_url or spec.novelty.store or meta.get("novelty_store")


def _record_store(meta: dict, url: str | None) -> bool:
    """Put the run's store key and server in ``meta``; whether anything changed."""
    before = (meta.get("store_key"), meta.get("novelty_store"))
    meta.setdefault("store_key", store_key(meta.get("name", "run"), meta.get("created", "")))
    if url:
        meta["novelty_store"] = public_url(url)
    return (meta["store_key"], meta.get("novelty_store")) != before


def _claim_run(spec: Spec, run_dir: Path, meta: dict, *, new: bool) -> RunLock:
    """Take the run directory's lock, then (only then) write to it: a new run's frozen spec
    and run.json."""
    if new:
        run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir).acquire()
    try:
        if new:
            _refuse_existing_run(run_dir)  # again, under the lock: two `run --out D` at once
            (run_dir / SPEC_YAML).write_text(yaml.safe_dump(spec.frozen(), sort_keys=False))
            write_json_atomic(run_dir / RUN_JSON, meta)
    except BaseException:
        lock.release()
        raise
    return lock


def checkpoint_serde() -> JsonPlusSerializer:
    """LangGraph's serializer, allowed to revive exactly our state types from a checkpoint
    (the default lets any class through with a warning, and will block them later)."""
    return JsonPlusSerializer(
        allowed_msgpack_modules=[
            DraftTask,
            DraftOutcome,
            RejectReason,
            # where checkpoints written before these types moved name them
            ("personaloom.graphs.state", "DraftTask"),
            ("personaloom.graphs.state", "DraftOutcome"),
            ("personaloom.agents.models", "RejectReason"),
        ]
    )


def embedded_model(
    endpoints: dict[str, Endpoint],
    run_dir: Path,
    stack: ExitStack | AsyncExitStack,
    niceness: int = 0,
) -> tuple[dict[str, Endpoint], Callable[[], Awaitable[str]]]:
    """Point roles without an endpoint at the embedded model, started on first use (with
    ``niceness`` added to its nice value) and stopped when ``stack`` closes."""
    from personaloom.local.server import MODEL_ALIAS, LocalModelServer

    server = LocalModelServer(log_path=run_dir / LOCAL_MODEL_LOG, niceness=niceness)
    stack.callback(server.stop)

    async def start() -> str:
        await asyncio.to_thread(server.start)
        return server.base_url

    return with_local(endpoints, None, MODEL_ALIAS), start


def _damaged(path: Path, exc: Exception, consequence: str) -> ConfigError:
    """A run file that cannot be opened: name it and what moving it aside costs."""
    return ConfigError(
        f"{path} is damaged ({type(exc).__name__}: {exc}); move it aside "
        f"(mv {path} {path}.damaged) and resume: {consequence}"
    )


def open_traces(run_dir: Path) -> TraceStore:
    try:
        return TraceStore(run_dir / TRACES)
    except sqlite3.DatabaseError as exc:
        raise _damaged(
            run_dir / TRACES,
            exc,
            "the samples are kept; the call history is lost, and budgets count the calls "
            f"{RUN_JSON} recorded",
        ) from None


def open_index(
    run_dir: Path,
    spec: Spec,
    store: RunStore,
    embedder: Embedder,
    notice: Callable[[str], object],
    avoid: AvoidSet | None = None,
    *,
    url: str | None = None,
    key: str = "",
) -> NoveltyIndex:
    """The run's Chroma store, holding exactly the run's samples and personas, and the items
    of the avoid set in a collection of their own.

    Chroma is derived data, so a store that cannot be opened or read is moved aside and
    rebuilt from dataset.jsonl and personas.jsonl, with a notice naming both folders. On a
    server (``url``) the run's collections are named after its store ``key``; missing ones
    are made and filled, and collections behind or ahead of the files are reconciled."""
    if url:
        # A shared server keeps each run's collections apart by its store key; the server a
        # run with workers starts on its own folder (key "") keeps the folder's own names.
        index = NoveltyIndex(url=url, prefix=run_prefix(key) if key else "")
        return _reconciled(index, spec, store, embedder, avoid)
    path = run_dir / CHROMA
    try:
        return _reconciled(NoveltyIndex(path), spec, store, embedder, avoid)
    except Exception as exc:  # noqa: BLE001 - Chroma raises many kinds for a damaged store
        aside = path.with_name(f"{CHROMA}.damaged-{datetime.now():%Y%m%d-%H%M%S}")
        discard_clients(path)  # Chroma keeps one client per path per process: drop the broken one
        path.rename(aside)
        notice(
            f"{path} could not be read ({type(exc).__name__}: {exc}); moved it to {aside} "
            "and rebuilding it from dataset.jsonl and personas.jsonl"
        )
        return _reconciled(NoveltyIndex(path), spec, store, embedder, avoid)


def check_workers(spec: Spec, url: str | None) -> None:
    """What ``--workers`` needs, checked before anything is written: Ray, the streaming
    engine, and a novelty memory (if any) that every worker can reach."""
    from personaloom.graphs.workers import ray_module

    ray_module()
    if spec.engine != "stream":
        raise ConfigError(
            f"--workers runs the streaming engine's drafts; the spec sets engine: {spec.engine} "
            "(remove it or set engine: stream)"
        )
    if spec.novelty.memory and not url:
        raise ConfigError(
            f"novelty.memory {spec.novelty.memory} is a local folder, which only one process "
            "may open; with --workers keep memories on a Chroma server: set novelty.store "
            "or --chroma-url"
        )


def start_own_store(run_dir: Path) -> Any:
    """``chroma run`` on 127.0.0.1 for the run directory's own store, for the workers."""
    from personaloom.chroma_server import ChromaServer

    discard_clients(run_dir / CHROMA)  # never two processes on one store
    return ChromaServer(run_dir / CHROMA, log_path=run_dir / CHROMA_SERVER_LOG).start()


async def start_workers(
    ctx: Context,
    endpoints: dict[str, Endpoint],
    overrides: Overrides,
    url: str,
    meta: dict,
    run_dir: Path,
) -> Any:
    """The Ray actors for ``--workers`` (graphs/workers.py), connected to the store at
    ``url``; the Ray cluster is started here unless ``--ray-address`` or RAY_ADDRESS."""
    from personaloom.graphs.workers import WorkerPool, WorkerSetup

    spec = ctx.spec
    shared = bool(novelty_store(spec, overrides, meta))
    memory = None
    if spec.novelty.memory:
        memory = (spec.novelty.memory, url, meta["store_key"], str(run_dir.resolve()))
    setup = WorkerSetup(
        spec=spec,
        endpoints=endpoints,
        overrides=overrides,
        store_url=url,
        store_prefix=run_prefix(meta["store_key"]) if shared else "",
        templates=ctx.templates,
        vocabulary=ctx.vocabulary,
        concurrency=spec.concurrency,
        cache_root=str(cache_root(spec)),
        memory=memory,
    )
    return await asyncio.to_thread(
        WorkerPool, setup, overrides.workers or 1, ctx, address=overrides.ray_address
    )


def _reconciled(
    index: NoveltyIndex,
    spec: Spec,
    store: RunStore,
    embedder: Embedder,
    avoid: AvoidSet | None = None,
) -> NoveltyIndex:
    index.reconcile(
        SAMPLES, {s["id"]: text_of(spec, s["output"]) for s in store.dataset.rows}, embedder.embed
    )
    index.reconcile(PERSONAS, {p["id"]: p["persona"] for p in store.personas.rows}, embedder.embed)
    items = {item.id: item.text for item in avoid.items} if avoid else {}
    index.reconcile(AVOID, items, lambda texts: embed_all(embedder, texts))
    return index


def read_inputs(spec: Spec) -> tuple[list[PoolRead], AvoidSet | None]:
    """The persona pool and the avoid set, read from their files (a TableError, exit 2,
    names a file that cannot be read)."""
    return load_pool(spec), load_avoid(spec)


def _close_memory(memory: NoveltyMemory, run_dir: Path, notice: Callable[[str], object]) -> None:
    try:
        memory.close()
    except StoreUnavailable as exc:
        notice(
            f"warning: the last samples were not added to novelty memory {memory.name} ({exc}); "
            f"once it answers, personaloom run --resume {run_dir} adds them"
        )


def spent_before(
    meta: dict, traces: TraceStore, prices: Prices, run_dir: Path, notice: Callable[[str], object]
) -> dict[str, Any]:
    """Calls, tokens and cost spent so far: the trace store's count, never below what
    run.json recorded (a deleted or replaced traces.sqlite must not reset a budget)."""
    usage = traces.usage()
    recorded = meta.get("spent") or {}
    calls, tokens = recorded.get("calls", 0), recorded.get("tokens", 0)
    if usage.calls < calls:
        notice(
            f"{run_dir / TRACES} holds {usage.calls} calls where {RUN_JSON} recorded {calls}: "
            "its call history was lost; budgets count the recorded calls (any made after "
            "they were last recorded are not counted)"
        )
    cost = max(total_cost(traces.token_usage(), prices), recorded.get("cost", 0.0))
    return {"calls": max(usage.calls, calls), "tokens": max(usage.tokens, tokens), "cost": cost}


async def arun(
    spec: Spec | str | Path | None = None,
    *,
    out: Path | None = None,
    resume: Path | None = None,
    overrides: Overrides | None = None,
    listeners: Iterable[Listener] = (),
    detail_listeners: Iterable[Listener] = (),
    control: RunControl | None = None,
    reviewer: Reviewer | None = None,
    local_model_niceness: int = 0,
    notice: Callable[[str], object] = _stderr,
) -> RunResult:
    """Run (or with ``resume``, continue) a spec; returns when the graph ends.

    ``listeners`` get run events (the ``--events`` stream); ``detail_listeners`` also get
    the fine-grained ones (node starts and ends, verdicts, novelty checks). ``control``
    pauses, stops or reviews the run from another task or thread; with ``control.review``
    on, ``reviewer`` decides on each batch's critic-accepted samples (without one, they
    are accepted). ``local_model_niceness`` lowers the embedded model's priority (the
    dashboard keeps its UI responsive that way).
    """
    spec, run_dir, meta = _load_run(spec, out, resume)
    try:
        return await _session(
            spec,
            run_dir,
            meta,
            resumed=resume is not None,
            overrides=overrides or Overrides(),
            listeners=listeners,
            detail_listeners=detail_listeners,
            control=control or RunControl(),
            reviewer=reviewer,
            local_model_niceness=local_model_niceness,
            notice=notice,
        )
    except StoreUnavailable as exc:
        if not (run_dir / RUN_JSON).exists():
            raise StoreUnavailable(
                f"{exc}; nothing was written: start it, then run again"
            ) from None
        raise StoreUnavailable(
            f"{exc}; what was written is intact: once it answers again, continue with  "
            f"personaloom run --resume {run_dir}"
        ) from None
    except Exception as exc:
        if not disk_full(exc):
            raise
        raise DiskFull(
            f"no space left on the device holding {run_dir} ({type(exc).__name__}: {exc}); "
            "what was written before is intact: free some space, then continue with  "
            f"personaloom run --resume {run_dir}"
        ) from None


async def _session(
    spec: Spec,
    run_dir: Path,
    meta: dict,
    *,
    resumed: bool,
    overrides: Overrides,
    listeners: Iterable[Listener],
    detail_listeners: Iterable[Listener],
    control: RunControl,
    reviewer: Reviewer | None,
    local_model_niceness: int,
    notice: Callable[[str], object],
) -> RunResult:
    """One session of a run whose directory and frozen spec ``_load_run`` has read, in the
    steps of ``_Session``; what they open closes with the exit stack, in reverse order."""
    session = _Session(spec, run_dir, meta, resumed=resumed, overrides=overrides, notice=notice)
    pool, avoid = await session.check_configuration()
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        # Everything that can be wrong with the configuration is found before the run
        # directory is touched: a failed start leaves no half-made run behind.
        session.open_models(stack, local_model_niceness)
        await session.reach_server()
        await session.open_memory(stack)
        session.claim(stack)
        session.open_llm(stack)
        await session.open_index(stack, avoid)
        ctx = await session.build_context(
            pool, avoid, listeners, detail_listeners, control, reviewer
        )
        if overrides.workers:
            await session.add_workers(stack, ctx)
        app, snapshot = await _open_checkpoints(run_dir, stack, spec.engine)
        session.mark_running()
        session.announce(ctx.events, pool, avoid)
        status, stop_reason, report = await session.drive(app, snapshot, ctx, reviewer, started)
    return RunResult(run_dir=run_dir, status=status, stop_reason=stop_reason, report=report)


class _Session:
    """The steps of one session, in the order ``_session`` takes them: each keeps what it
    opens here for the later steps, and leaves its closing to the session's exit stack."""

    # Set by the steps, in this order.
    endpoints: dict[str, Endpoint]
    needs_local: bool  # some role has no endpoint: the embedded model serves it
    start_embedded: Callable[[], Awaitable[str]] | None = None
    cache: ReplyCache | None
    embedder: Embedder
    url: str | None  # the run's Chroma server, if the spec, the command or run.json names one
    recorded: bool  # the store key or server is new to run.json
    memory: NoveltyMemory | None = None
    traces: TraceStore
    budget: Budget
    llm: LLM
    store: RunStore
    own_server: Any = None  # the server started on the run's own store, for the workers
    index: NoveltyIndex

    def __init__(
        self,
        spec: Spec,
        run_dir: Path,
        meta: dict,
        *,
        resumed: bool,
        overrides: Overrides,
        notice: Callable[[str], object],
    ) -> None:
        self.spec, self.run_dir, self.meta = spec, run_dir, meta
        self.resumed, self.overrides, self.notice = resumed, overrides, notice

    async def check_configuration(self) -> tuple[list[PoolRead], AvoidSet | None]:
        """The endpoints, their prices and the budget checked, and the persona pool and the
        avoid set read (returned), all before the run directory is touched."""
        spec, notice = self.spec, self.notice
        self.endpoints, self.needs_local = resolve_endpoints(spec, self.overrides)
        if problems := check_prices(spec, self.endpoints):
            raise SpecError(spec.source, problems)
        if not self.resumed and (warning := budget_warning(spec, self.endpoints)):
            notice(f"warning: {warning}")
        pool, avoid = await asyncio.to_thread(read_inputs, spec)  # before the run directory
        if spec.personas.check == "llm" and self.endpoints["persona_checker"].embedded:
            notice(
                "warning: personas.check is llm but the persona_checker role has no endpoint: the "
                "embedded 135M model cannot judge personas (set models.persona_checker)"
            )
        return pool, avoid

    def open_models(self, stack: AsyncExitStack, niceness: int) -> None:
        """The reply cache, the embedded model for the roles without an endpoint (started on
        first use) and the embedder."""
        self.cache = open_cache(self.spec, stack)
        if self.needs_local:
            from personaloom.local.server import TINY_MODEL_NOTICE

            self.notice(TINY_MODEL_NOTICE)
            self.endpoints, self.start_embedded = embedded_model(
                self.endpoints, self.run_dir, stack, niceness
            )
        self.embedder = make_embedder(self.spec, self.overrides, self.endpoints, self.cache)
        stack.push_async_callback(aclose_embedder, self.embedder)

    async def reach_server(self) -> None:
        """The run's Chroma server, if it has one, recorded in ``meta`` and answering."""
        self.url = url = novelty_store(self.spec, self.overrides, self.meta)
        if self.overrides.workers:
            check_workers(self.spec, url)
        self.recorded = _record_store(self.meta, url)
        if url:
            await asyncio.to_thread(connect, url)  # one that does not answer: nothing made yet

    async def open_memory(self, stack: AsyncExitStack) -> None:
        """The spec's novelty memory, if it names one."""
        if self.spec.novelty.memory:
            self.memory = await asyncio.to_thread(
                open_memory,
                self.spec.novelty.memory,
                url=self.url,
                embedder=self.embedder.name,
                run_key=self.meta["store_key"],
                run_dir=self.run_dir,
            )
            stack.callback(_close_memory, self.memory, self.run_dir, self.notice)

    def claim(self, stack: AsyncExitStack) -> None:
        """The run directory's lock, then its files: a new run's spec and run.json, or a
        resumed run's store key and server where they are new to its run.json."""
        stack.callback(_claim_run(self.spec, self.run_dir, self.meta, new=not self.resumed).release)
        if self.resumed and self.recorded:
            write_json_atomic(self.run_dir / RUN_JSON, self.meta)

    def open_llm(self, stack: AsyncExitStack) -> None:
        """The trace store, the budget (counting what earlier sessions spent) and the LLM
        client that records into both."""
        spec = self.spec
        self.traces = open_traces(self.run_dir)
        stack.callback(self.traces.close)
        prices = Prices.of(spec)
        spent = spent_before(self.meta, self.traces, prices, self.run_dir, self.notice)
        self.budget = Budget(
            max_calls=spec.budget.max_calls,
            max_tokens=spec.budget.max_tokens,
            max_cost=spec.budget.max_cost,
            max_seconds=spec.budget.max_seconds,
            prices=prices,
            **spent,
            elapsed_before=self.meta.get("elapsed_seconds", 0.0),
        )
        self.llm = LLM(
            self.endpoints,
            traces=self.traces,
            budget=self.budget,
            cache=self.cache,
            concurrency=spec.concurrency,
            start_embedded=self.start_embedded,
            notice=self.notice,
        )
        stack.push_async_callback(self.llm.aclose)

    @property
    def store_url(self) -> str | None:
        """Where the run's Chroma store is served: its server, else its own for the workers."""
        return self.url or (self.own_server.url if self.own_server else None)

    async def open_index(self, stack: AsyncExitStack, avoid: AvoidSet | None) -> None:
        """The run's files, its Chroma store (served by a server of its own when the workers
        need one and the run names none) and novelty memory, both holding the run's samples."""
        self.store = store = RunStore(self.run_dir)
        if self.overrides.workers and not self.url:  # the workers need the store on a server
            self.own_server = await asyncio.to_thread(start_own_store, self.run_dir)
            stack.callback(self.own_server.stop)
        self.index = await asyncio.to_thread(
            open_index,
            self.run_dir,
            self.spec,
            store,
            self.embedder,
            self.notice,
            avoid,
            url=self.store_url,
            key=self.meta["store_key"] if self.url else "",
        )
        if self.memory is not None:
            accepted = {s["id"]: text_of(self.spec, s["output"]) for s in store.dataset.rows}
            await asyncio.to_thread(self.memory.reconcile, accepted, self.embedder.embed)

    async def build_context(
        self,
        pool: list[PoolRead],
        avoid: AvoidSet | None,
        listeners: Iterable[Listener],
        detail_listeners: Iterable[Listener],
        control: RunControl,
        reviewer: Reviewer | None,
    ) -> Context:
        """The graph's context over what the steps opened, wired before the graph runs."""
        ctx = Context(
            spec=self.spec,
            store=self.store,
            llm=self.llm,
            embedder=self.embedder,
            index=self.index,
            corpus=Corpus(self.spec),
            events=EventSink(self.traces, list(listeners), list(detail_listeners)),
            control=control,
            pool=[persona for source in pool for persona in source.personas],
            avoid=avoid,
            memory=self.memory,
        )
        await asyncio.to_thread(wire, ctx)
        if self.spec.engine == "stream" and reviewer is not None:
            ctx.reviewer = _stream_reviewer(ctx, reviewer)
        return ctx

    async def add_workers(self, stack: AsyncExitStack, ctx: Context) -> None:
        """The Ray workers of ``--workers``, on the embedded model too if the run uses it."""
        if self.start_embedded is not None:  # the workers use the embedded model too
            from personaloom.local.server import MODEL_ALIAS

            self.endpoints = with_local(self.endpoints, await self.start_embedded(), MODEL_ALIAS)
            self.llm.endpoints = self.endpoints
        url = self.store_url
        assert url is not None  # open_index started a server where the run names none
        ctx.workers = await start_workers(
            ctx, self.endpoints, self.overrides, url, self.meta, self.run_dir
        )
        stack.callback(ctx.workers.shutdown)

    def mark_running(self) -> None:
        """run.json says the run is running, once every file is open: readers must know it."""
        if self.meta.get("status") != "running":
            self.meta["status"], self.meta["stop_reason"] = "running", None
            write_json_atomic(self.run_dir / RUN_JSON, self.meta)

    def announce(self, events: EventSink, pool: list[PoolRead], avoid: AvoidSet | None) -> None:
        """Tell the listeners the run started and what it read; from now on run.json's count
        of what was spent is kept current."""
        events.listeners.append(_SpentRecorder(self.run_dir, self.meta, self.budget))
        events.emit(
            "run_started",
            run_dir=str(self.run_dir),
            resumed=self.resumed,
            accepted=self.store.accepted,
            models={role: e.public() for role, e in self.endpoints.items()},
        )
        for source in pool:
            events.emit("pool_loaded", **source.event())
        if avoid is not None:
            events.emit("avoid_loaded", items=len(avoid), ngrams=avoid.ngrams, ngram=avoid.ngram)

    async def drive(
        self, app: Any, snapshot: Any, ctx: Context, reviewer: Reviewer | None, started: float
    ) -> tuple[str, str | None, dict[str, Any]]:
        """Run the graph from its checkpoint until it ends, then end the session however the
        graph ended: the status, the stop reason and the report."""
        status: str = "interrupted"
        stop_reason: str | None = "interrupted"
        try:
            graph_input = _graph_input(snapshot)
            final = snapshot.values or {}
            if graph_input is not None or snapshot.next:
                final = await _drive(app, graph_input, ctx, reviewer, THREADS[self.spec.engine])
            status, stop_reason = final["status"], final.get("stop_reason")
        except Exception as exc:
            status, stop_reason = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if isinstance(ctx.window, Dispatcher):
                await ctx.window.aclose()
            try:
                report = await self.end(status, stop_reason, started)
            except Exception as exc:
                if status != "error":
                    raise
                # Already failing (a full disk, most often): keep that error, not this one.
                self.notice(f"warning: the end of the session was not recorded: {exc}")
            ctx.events.emit(
                "run_finished",
                status=status,
                stop_reason=stop_reason,
                accepted=self.store.accepted,
                **self.budget.spent(),
            )
        return status, stop_reason, report

    async def end(self, status: str, stop_reason: str | None, started: float) -> dict[str, Any]:
        """Record how the session ended in run.json, then write the report."""
        meta = self.meta
        # run.json first: it is quick, and a second Ctrl-C during the slower report must not
        # leave the run marked running.
        meta["elapsed_seconds"] = round(
            meta.get("elapsed_seconds", 0.0) + time.monotonic() - started, 3
        )
        meta["status"] = status
        meta["stop_reason"] = stop_reason
        meta["spent"] = self.budget.spent()
        write_json_atomic(self.run_dir / RUN_JSON, meta)
        try:
            vectors = await asyncio.to_thread(self.index.vectors, SAMPLES)
            persona_vectors = await asyncio.to_thread(self.index.vectors, PERSONAS)
        except StoreUnavailable as exc:
            if status != "error":  # a run that ended well ends well: Chroma is derived data
                self.notice(f"warning: {exc}; the report leaves out the embedding measures")
            vectors = persona_vectors = None  # type: ignore[assignment]  # the report does without
        report = build_report(
            self.spec,
            self.store,
            self.traces,
            status=status,
            stop_reason=stop_reason,
            vectors=vectors,
            spent=meta["spent"],
            persona_vectors=persona_vectors,
        )
        write_report(self.run_dir, report)
        return report


def _graph_input(snapshot: Any) -> Any:
    """What the graph is invoked with: None to continue where it was cut off (or, for a run
    that finished, to do nothing), else the next round's start."""
    values = snapshot.values or {}
    if snapshot.next:
        return None  # continue where it was cut off
    if values.get("status") not in (None, *RESUMABLE):
        return None  # a finished run: nothing left to do
    return {
        "status": "running",
        "stop_reason": None,
        "outcomes": None,
        "round": values.get("round", 0),
    }


class LatestCheckpoints(AsyncSqliteSaver):
    """LangGraph's SQLite checkpointer, keeping only the latest checkpoints of a thread.

    A resume needs the last checkpoint and its pending writes, nothing older (personaloom
    never travels back in a run's history), while every graph step adds a full one: 13 KB
    per accepted sample in `make soak`, 13 GB at a million. Every ``PRUNE_EVERY`` saves, all
    but the newest ``KEEP`` checkpoints of the thread (and their writes) are deleted, so the
    file stays flat: SQLite reuses the freed pages.
    """

    PRUNE_EVERY = 32
    KEEP = 2

    _saves = 0

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        saved = await super().aput(config, checkpoint, metadata, new_versions)
        self._saves += 1
        if self._saves % self.PRUNE_EVERY == 0:
            await self._prune(saved["configurable"])
        return saved

    async def _prune(self, where: dict[str, Any]) -> None:
        key = (str(where["thread_id"]), where.get("checkpoint_ns", ""))
        async with self.lock:
            await self.conn.execute(
                """DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ?
                   AND checkpoint_id NOT IN (
                     SELECT checkpoint_id FROM checkpoints
                     WHERE thread_id = ? AND checkpoint_ns = ?
                     ORDER BY checkpoint_id DESC LIMIT ?)""",
                (*key, *key, self.KEEP),
            )
            await self.conn.execute(
                """DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ?
                   AND checkpoint_id NOT IN (
                     SELECT checkpoint_id FROM checkpoints
                     WHERE thread_id = ? AND checkpoint_ns = ?)""",
                (*key, *key),
            )
            await self.conn.commit()


async def _open_checkpoints(run_dir: Path, stack: AsyncExitStack, engine: str) -> tuple[Any, Any]:
    """The engine's graph compiled over the run's SQLite checkpointer, and its saved state."""
    path = run_dir / CHECKPOINTS
    conn = await stack.enter_async_context(aiosqlite.connect(str(path)))
    try:
        # WAL (the saver's own setting) with NORMAL sync: a commit survives a crash of this
        # process, only a power cut can lose the last ones, and a lost checkpoint costs
        # nothing but replanning (graphs/planner.first_free_round). FULL syncs every write.
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = LatestCheckpoints(conn, serde=checkpoint_serde())
        graph = build_stream_graph() if engine == "stream" else build_graph()
        app = graph.compile(checkpointer=saver)
        return app, await app.aget_state(THREADS[engine])  # type: ignore[arg-type]
    except sqlite3.DatabaseError as exc:
        raise _damaged(
            path, exc, "the run continues from dataset.jsonl, planning the drafts still needed"
        ) from None


class _SpentRecorder:
    """Keeps run.json's count of spent calls, tokens and cost current (at most every few seconds),
    so that budgets survive the loss of traces.sqlite even after a kill."""

    EVERY = 2.0

    def __init__(self, run_dir: Path, meta: dict, budget: Budget):
        self.run_dir, self.meta, self.budget = run_dir, meta, budget
        self._last = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last >= self.EVERY:
            self._last = now
            self.meta["spent"] = self.budget.spent()
            write_json_atomic(self.run_dir / RUN_JSON, self.meta)


def _stream_reviewer(ctx: Context, reviewer: Reviewer) -> Callable[[list], Any]:
    """The streaming engine's review step: the reviewer's decisions, as rejected ids."""

    async def review(samples: list[dict[str, Any]]) -> list[str]:
        ctx.events.emit("review_requested", samples=[s["id"] for s in samples])
        decisions = await reviewer(samples)
        rejected = [i for i, ok in decisions.items() if ok is False]
        ctx.events.emit("review_done", rejected=rejected)
        return rejected

    return review


async def _drive(
    app: Any, graph_input: Any, ctx: Context, reviewer: Reviewer | None, thread: dict
) -> dict:
    """Invoke the graph, answering its review interrupts, until it ends."""
    while True:
        final = await app.ainvoke(graph_input, thread, context=ctx)
        pending = final.get("__interrupt__")
        if not pending:
            return final
        samples = pending[0].value.get("samples", [])
        ctx.events.emit("review_requested", samples=[s["id"] for s in samples])
        decisions = await reviewer(samples) if reviewer else {}
        rejected = [i for i, ok in decisions.items() if ok is False]
        ctx.events.emit("review_done", rejected=rejected)
        # Not the decisions dict itself: LangGraph reads a dict resume value whose keys all
        # look like interrupt ids (vacuously, an empty one) as a map of interrupt id -> value.
        graph_input = Command(resume={"rejected": rejected})


def run(spec: Spec | str | Path | None = None, **kwargs: Any) -> RunResult:
    """Synchronous ``arun`` for scripts: ``run("spec.yaml").report``."""
    return asyncio.run(arun(spec, **kwargs))


__all__ = ["ConfigError", "RunControl", "RunResult", "SpecError", "arun", "run"]
