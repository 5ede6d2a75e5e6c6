"""Overhead per accepted sample: everything personaloom does besides waiting for the model.

A full run (persona mining, writer, critic, novelty, commits) against the scripted endpoint
in its own process, answering at once, with the local MiniLM embeddings. At concurrency 1
nothing overlaps, so the wall time splits into exclusive parts, timed by wrapping the
functions that do each kind of work; what no wrapper covers is LangGraph's own stepping,
pydantic, asyncio and the rest ("graph and other"). The endpoint's own CPU time is reported
apart: it is not personaloom's. A second figure runs at concurrency 4, where the endpoint and
personaloom overlap on 2 cores.

    python bench/overhead.py [--samples 48] [--repeats 5] [--quick] [--profile FILE]
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as common

AIM_MS = 20.0

# What each timed function counts as. Exclusive times: a timed call inside another (a cache
# read inside an embedding call) is taken out of the outer one.
TIMED: dict[str, list[tuple[str, str, str]]] = {
    # category: (module, class or "", attribute)
    "embedding (MiniLM)": [("personaloom.local.embed", "LocalEmbedder", "embed")],
    "Chroma queries": [("personaloom.vectors", "NoveltyIndex", "nearest")],
    "Chroma adds": [("personaloom.vectors", "NoveltyIndex", "add")],
    "trace writes": [
        ("personaloom.traces", "TraceStore", "record_call"),
        ("personaloom.traces", "TraceStore", "record_event"),
    ],
    "cache reads and writes": [
        ("personaloom.llm.cache", "ReplyCache", "get"),
        ("personaloom.llm.cache", "ReplyCache", "set"),
    ],
    "JSONL appends (fsync)": [
        ("personaloom.store", "RunStore", "add_sample"),
        ("personaloom.store", "RunStore", "add_rejection"),
        ("personaloom.store", "RunStore", "add_persona"),
    ],
    "checkpoints: serialising state": [
        ("langgraph.checkpoint.serde.jsonplus", "JsonPlusSerializer", "dumps_typed"),
    ],
    "HTTP request (client + endpoint)": [("personaloom.llm.client", "LLM", "_request")],
    "prompt rendering (Jinja)": [("personaloom.prompts", "PromptTemplate", "render")],
    "reply schemas (pydantic)": [
        ("personaloom.spec", "Spec", "output_model"),
        ("personaloom.agents.critic", "", "critic_model"),
        ("pydantic", "BaseModel", "model_json_schema"),
    ],
    "LLM layer (rest of LLM.call)": [("personaloom.llm.client", "LLM", "call")],
}


CHECKPOINT_SQL = "checkpoints: SQLite (background thread)"


class Timers:
    """Exclusive time per category, across threads and asyncio tasks (via contextvars)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._frame: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
            "bench_frame", default=None
        )
        self._undo: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def _enter(self) -> tuple[list[float], list[float] | None, contextvars.Token, float]:
        frame = [0.0]  # time spent in timed calls nested in this one
        parent = self._frame.get()
        return frame, parent, self._frame.set(frame), time.perf_counter()

    def _exit(self, category: str, state: tuple) -> None:
        frame, parent, token, started = state
        elapsed = time.perf_counter() - started
        self._frame.reset(token)
        self.seconds[category] += elapsed - frame[0]
        self.calls[category] += 1
        if parent is not None:
            parent[0] += elapsed

    def wrap(self, category: str, func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                state = self._enter()
                try:
                    return await func(*args, **kwargs)
                finally:
                    self._exit(category, state)

            return timed_async

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            state = self._enter()
            try:
                return func(*args, **kwargs)
            finally:
                self._exit(category, state)

        return timed

    def install(self) -> None:
        import importlib

        for category, targets in TIMED.items():
            for module_name, class_name, attr in targets:
                module = importlib.import_module(module_name)
                owner = getattr(module, class_name) if class_name else module
                raw = owner.__dict__[attr]
                if isinstance(raw, classmethod):
                    wrapped: Any = classmethod(self.wrap(category, raw.__func__))
                else:
                    wrapped = self.wrap(category, raw)
                setattr(owner, attr, wrapped)
                self._undo.append(functools.partial(setattr, owner, attr, raw))

        # The checkpointer's SQLite work runs in aiosqlite's own thread, in the background of
        # the graph's steps: time the functions that thread executes. (aiosqlite serves only
        # the checkpointer here.)
        from aiosqlite.core import Connection

        execute = Connection._execute
        timed_fn = self.wrap

        async def _execute(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            return await execute(conn, timed_fn(CHECKPOINT_SQL, fn), *args, **kwargs)

        Connection._execute = _execute  # type: ignore[method-assign]
        self._undo.append(functools.partial(setattr, Connection, "_execute", execute))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()


def one_run(
    endpoint: common.Endpoint,
    folder: Path,
    samples: int,
    concurrency: int,
    timers: Timers | None,
    embeddings: str = "local",
) -> dict[str, Any]:
    timed = common.timed_run(
        endpoint,
        folder,
        samples=samples,
        concurrency=concurrency,
        embeddings=embeddings,
        on_start=timers.reset if timers is not None else None,
    )
    accepted = timed.report["accepted"]
    return {
        "accepted": accepted,
        "rejected": timed.report["rejected"],
        "calls": timed.chat_calls,
        "startup_s": timed.startup_s,
        "window_s": timed.window_s,
        "ms_per_sample": 1000 * timed.window_s / accepted,
        "endpoint_cpu_s": timed.endpoint_cpu_s,
        "split_s": dict(timers.seconds) if timers else None,
        "split_calls": dict(timers.calls) if timers else None,
    }


def warm_up() -> float:
    """Load MiniLM once (it is shared by later runs in this process); seconds it took."""
    from personaloom.local.embed import LocalEmbedder

    started = time.perf_counter()
    LocalEmbedder().embed(["warm up"])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=48, help="accepted samples per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs at concurrency 1")
    parser.add_argument("--profile", type=Path, help="cProfile one extra run into this file")
    args = parser.parse_args(argv)
    # --quick: embeddings from the scripted endpoint, so no model is loaded.
    embeddings = "openai" if args.quick else "local"
    if args.quick:
        args.samples, args.repeats = 8, 1
    common.bench_env()
    started = time.perf_counter()
    load_s = warm_up() if embeddings == "local" else 0.0
    timers = Timers()
    runs_c1, runs_c4, runs_remote = [], [], []
    with common.scripted_endpoint(latency=0.0) as endpoint, tempfile.TemporaryDirectory() as tmp:

        def one(
            name: str, concurrency: int, timed: Timers | None = None, where: str = embeddings
        ) -> dict[str, Any]:
            folder = Path(tmp) / name
            return one_run(endpoint, folder, args.samples, concurrency, timed, where)

        if not args.quick:
            one("warm", 1)  # imports and first-call caches
        # Interleaved, so that the shared machine's noise hits every kind of run alike; the
        # timing wrappers stay on throughout, so their own small cost does too.
        timers.install()
        try:
            for i in range(args.repeats):
                runs_c1.append(one(f"c1-{i}", 1, timers))
                if i % 2 == 0:
                    runs_c4.append(one(f"c4-{i}", 4))
                    runs_remote.append(one(f"remote-{i}", 1, where="openai"))
        finally:
            timers.uninstall()
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            one("profile", 1)
            profiler.disable()
            profiler.dump_stats(str(args.profile))

    summary = summarise(runs_c1, runs_c4, runs_remote, load_s)
    print_summary(summary)
    path = common.write_results(args.out, "overhead", summary, started)
    print(f"\nresults: {path}")
    return 0


def _overhead(runs: list[dict]) -> float:
    """Median wall per sample minus the endpoint's own CPU per sample."""
    return common.median(
        [r["ms_per_sample"] - 1000 * r["endpoint_cpu_s"] / r["accepted"] for r in runs]
    )


def summarise(
    runs_c1: list[dict], runs_c4: list[dict], runs_remote: list[dict], load_s: float
) -> dict[str, Any]:
    per_sample = [r["ms_per_sample"] for r in runs_c1]
    mid = sorted(runs_c1, key=lambda r: r["ms_per_sample"])[len(runs_c1) // 2]
    n = mid["accepted"]
    endpoint_ms = 1000 * mid["endpoint_cpu_s"] / n
    split = {k: 1000 * v / n for k, v in mid["split_s"].items()}
    covered = sum(split.values())
    split["graph and other (not timed)"] = mid["ms_per_sample"] - covered
    http = split.pop("HTTP request (client + endpoint)", 0.0)
    split["HTTP client (openai, httpx, langchain)"] = http - endpoint_ms
    split = dict(sorted(split.items(), key=lambda kv: -kv[1]))
    return {
        "aim_ms_per_sample": AIM_MS,
        "samples_per_run": n,
        "calls_per_sample": mid["calls"] / n,
        "concurrency_1": {
            "runs": len(runs_c1),
            "wall_ms_per_sample_median": common.median(per_sample),
            "wall_ms_per_sample_all": [round(x, 2) for x in per_sample],
            "endpoint_cpu_ms_per_sample": endpoint_ms,
            "overhead_ms_per_sample_median": _overhead(runs_c1),
            "split_ms_per_sample": {k: round(v, 3) for k, v in split.items()},
            "split_calls_per_sample": {k: round(v / n, 2) for k, v in mid["split_calls"].items()},
        },
        "concurrency_4": {
            "runs": len(runs_c4),
            "wall_ms_per_sample_median": common.median([r["ms_per_sample"] for r in runs_c4]),
            "overhead_ms_per_sample_median": _overhead(runs_c4),
            "wall_ms_per_sample_all": [round(r["ms_per_sample"], 2) for r in runs_c4],
        },
        "endpoint_embeddings": {  # concurrency 1, the endpoint embeds: no local model
            "runs": len(runs_remote),
            "wall_ms_per_sample_median": common.median([r["ms_per_sample"] for r in runs_remote]),
            "overhead_ms_per_sample_median": _overhead(runs_remote),
            "wall_ms_per_sample_all": [round(r["ms_per_sample"], 2) for r in runs_remote],
        },
        "startup_s_median": common.median([r["startup_s"] for r in runs_c1]),
        "minilm_load_s": load_s,
        "runs": runs_c1 + runs_c4 + runs_remote,
    }


def print_summary(s: dict[str, Any]) -> None:
    c1, c4, remote = s["concurrency_1"], s["concurrency_4"], s["endpoint_embeddings"]
    print(
        f"Overhead per accepted sample ({s['samples_per_run']} samples per run, "
        f"{s['calls_per_sample']:.2f} endpoint calls each, endpoint answering at once)\n"
    )
    rows = [
        ["wall per sample, concurrency 1", c1["wall_ms_per_sample_median"], c1["runs"]],
        ["  minus the endpoint's own CPU", c1["overhead_ms_per_sample_median"], c1["runs"]],
        ["wall per sample, concurrency 4", c4["wall_ms_per_sample_median"], c4["runs"]],
        ["  minus the endpoint's own CPU", c4["overhead_ms_per_sample_median"], c4["runs"]],
        ["concurrency 1, endpoint embeds", remote["wall_ms_per_sample_median"], remote["runs"]],
        ["  minus the endpoint's own CPU", remote["overhead_ms_per_sample_median"], remote["runs"]],
    ]
    print(common.table(["median ms per accepted sample", "ms", "runs"], rows))
    print(f"aim: under {AIM_MS:g} ms per sample\n")
    total = c1["wall_ms_per_sample_median"]
    rows = [
        [name, ms, f"{100 * ms / total:.0f}%"] for name, ms in c1["split_ms_per_sample"].items()
    ]
    rows.append(["endpoint's own CPU (not personaloom)", c1["endpoint_cpu_ms_per_sample"], ""])
    print(common.table(["where the time goes (concurrency 1, median run)", "ms", "share"], rows))
    print(
        f"\nfixed per run: startup {s['startup_s_median']:.2f} s (median), "
        f"MiniLM load {s['minilm_load_s']:.1f} s (once per process)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
