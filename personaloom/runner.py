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
from personaloom.embeddings import Embedder, embed_all, make_embedder
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
from personaloom.llm.cache import cache_root, open_cache, public_url
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
    """One session of a run whose directory and frozen spec ``_load_run`` has read."""
    endpoints, needs_local = resolve_endpoints(spec, overrides)
    if problems := check_prices(spec, endpoints):
        raise SpecError(spec.source, problems)
    if not resumed and (warning := budget_warning(spec, endpoints)):
        notice(f"warning: {warning}")
    pool, avoid = await asyncio.to_thread(read_inputs, spec)  # before the run directory
    if spec.personas.check == "llm" and endpoints["persona_checker"].embedded:
        notice(
            "warning: personas.check is llm but the persona_checker role has no endpoint: the "
            "embedded 135M model cannot judge personas (set models.persona_checker)"
        )
    started = time.monotonic()
    status: str = "interrupted"
    stop_reason: str | None = "interrupted"
    async with AsyncExitStack() as stack:
        # Everything that can be wrong with the configuration is found before the run
        # directory is touched: a failed start leaves no half-made run behind.
        cache = open_cache(spec, stack)
        start_embedded = None
        if needs_local:
            from personaloom.local.server import TINY_MODEL_NOTICE

            notice(TINY_MODEL_NOTICE)
            endpoints, start_embedded = embedded_model(
                endpoints, run_dir, stack, local_model_niceness
            )
        embedder = make_embedder(spec, overrides, endpoints, cache)
        url = novelty_store(spec, overrides, meta)
        if overrides.workers:
            check_workers(spec, url)
        recorded = _record_store(meta, url)
        if url:
            await asyncio.to_thread(connect, url)  # one that does not answer: nothing made yet
        memory = None
        if spec.novelty.memory:
            memory = await asyncio.to_thread(
                open_memory,
                spec.novelty.memory,
                url=url,
                embedder=embedder.name,
                run_key=meta["store_key"],
                run_dir=run_dir,
            )
            stack.callback(_close_memory, memory, run_dir, notice)
        stack.callback(_claim_run(spec, run_dir, meta, new=not resumed).release)
        if resumed and recorded:
            write_json_atomic(run_dir / RUN_JSON, meta)
        traces = open_traces(run_dir)
        stack.callback(traces.close)
        prices = Prices.of(spec)
        spent = spent_before(meta, traces, prices, run_dir, notice)
        budget = Budget(
            max_calls=spec.budget.max_calls,
            max_tokens=spec.budget.max_tokens,
            max_cost=spec.budget.max_cost,
            max_seconds=spec.budget.max_seconds,
            prices=prices,
            **spent,
            elapsed_before=meta.get("elapsed_seconds", 0.0),
        )
        llm = LLM(
            endpoints,
            traces=traces,
            budget=budget,
            cache=cache,
            concurrency=spec.concurrency,
            start_embedded=start_embedded,
            notice=notice,
        )
        stack.push_async_callback(llm.aclose)
        store = RunStore(run_dir)
        own_server = None
        if overrides.workers and not url:  # the workers need the store on a server
            own_server = await asyncio.to_thread(start_own_store, run_dir)
            stack.callback(own_server.stop)
        index = await asyncio.to_thread(
            open_index,
            run_dir,
            spec,
            store,
            embedder,
            notice,
            avoid,
            url=url or (own_server.url if own_server else None),
            key=meta["store_key"] if url else "",
        )
        if memory is not None:
            accepted = {s["id"]: text_of(spec, s["output"]) for s in store.dataset.rows}
            await asyncio.to_thread(memory.reconcile, accepted, embedder.embed)
        events = EventSink(traces, list(listeners), list(detail_listeners))
        ctx = Context(
            spec=spec,
            store=store,
            llm=llm,
            embedder=embedder,
            index=index,
            corpus=Corpus(spec),
            events=events,
            control=control,
            pool=[persona for source in pool for persona in source.personas],
            avoid=avoid,
            memory=memory,
        )
        await asyncio.to_thread(wire, ctx)
        engine = spec.engine
        if engine == "stream" and reviewer is not None:
            ctx.reviewer = _stream_reviewer(ctx, reviewer)
        if overrides.workers:
            if start_embedded is not None:  # the workers use the embedded model too
                from personaloom.local.server import MODEL_ALIAS

                endpoints = with_local(endpoints, await start_embedded(), MODEL_ALIAS)
                llm.endpoints = endpoints
            ctx.workers = await start_workers(
                ctx,
                endpoints,
                overrides,
                url or own_server.url,  # type: ignore[union-attr]  # one of them is set
                meta,
                run_dir,
            )
            stack.callback(ctx.workers.shutdown)
        app, snapshot = await _open_checkpoints(run_dir, stack, engine)
        values = snapshot.values or {}
        if meta.get("status") != "running":  # every file opened: readers must know it runs
            meta["status"], meta["stop_reason"] = "running", None
            write_json_atomic(run_dir / RUN_JSON, meta)
        events.listeners.append(_SpentRecorder(run_dir, meta, budget))
        events.emit(
            "run_started",
            run_dir=str(run_dir),
            resumed=resumed,
            accepted=store.accepted,
            models={role: e.public() for role, e in endpoints.items()},
        )
        for source in pool:
            events.emit("pool_loaded", **source.event())
        if avoid is not None:
            events.emit("avoid_loaded", items=len(avoid), ngrams=avoid.ngrams, ngram=avoid.ngram)
        try:
            if snapshot.next:
                graph_input: Any = None  # continue where it was cut off
            elif values.get("status") not in (None, *RESUMABLE):
                graph_input = None  # a finished run: nothing left to do
            else:
                graph_input = {"status": "running", "stop_reason": None, "outcomes": None}
                graph_input["round"] = values.get("round", 0)
            final = values
            if graph_input is not None or snapshot.next:
                final = await _drive(app, graph_input, ctx, reviewer, THREADS[engine])
            status, stop_reason = final["status"], final.get("stop_reason")
        except Exception as exc:
            status, stop_reason = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if isinstance(ctx.window, Dispatcher):
                await ctx.window.aclose()
            try:
                report = await _end_session(
                    spec,
                    run_dir,
                    meta,
                    store,
                    traces,
                    index,
                    budget,
                    status,
                    stop_reason,
                    started,
                    notice,
                )
            except Exception as exc:
                if status != "error":
                    raise
                # Already failing (a full disk, most often): keep that error, not this one.
                notice(f"warning: the end of the session was not recorded: {exc}")
            events.emit(
                "run_finished",
                status=status,
                stop_reason=stop_reason,
                accepted=store.accepted,
                **budget.spent(),
            )
    return RunResult(run_dir=run_dir, status=status, stop_reason=stop_reason, report=report)


async def _end_session(
    spec: Spec,
    run_dir: Path,
    meta: dict,
    store: RunStore,
    traces: TraceStore,
    index: NoveltyIndex,
    budget: Budget,
    status: str,
    stop_reason: str | None,
    started: float,
    notice: Callable[[str], object],
) -> dict[str, Any]:
    """Record how the session ended in run.json, then write the report."""
    # run.json first: it is quick, and a second Ctrl-C during the slower report must not
    # leave the run marked running.
    meta["elapsed_seconds"] = round(
        meta.get("elapsed_seconds", 0.0) + time.monotonic() - started, 3
    )
    meta["status"] = status
    meta["stop_reason"] = stop_reason
    meta["spent"] = budget.spent()
    write_json_atomic(run_dir / RUN_JSON, meta)
    try:
        vectors = await asyncio.to_thread(index.vectors, SAMPLES)
        persona_vectors = await asyncio.to_thread(index.vectors, PERSONAS)
    except StoreUnavailable as exc:
        if status != "error":  # a run that ended well ends well: Chroma is derived data
            notice(f"warning: {exc}; the report leaves out the embedding measures")
        vectors = persona_vectors = None  # type: ignore[assignment]  # the report does without
    report = build_report(
        spec,
        store,
        traces,
        status=status,
        stop_reason=stop_reason,
        vectors=vectors,
        spent=meta["spent"],
        persona_vectors=persona_vectors,
    )
    write_report(run_dir, report)
    return report


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
