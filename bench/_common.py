"""Shared pieces of the benchmarks: results files, tables, the machine, the endpoint, specs.

Conventions (see bench/README.md): every ``bench/<name>.py`` has ``main(argv=None) -> int``,
prints a short table on stdout, writes ``<out>/<name>.json`` (``--out``, default
``bench/results``) and takes ``--quick`` for a tiny run (the smoke test uses it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def _load_specs() -> ModuleType:
    """personaloom/testing/specs.py of this working tree, loaded by its path, not imported:
    compare.py runs these scripts with an older personaloom first on the path (which may
    have no such module), and both of its sides must run the same spec."""
    path = REPO / "personaloom" / "testing" / "specs.py"
    found = importlib.util.spec_from_file_location("_bench_specs", path)
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


specs = _load_specs()  # the spec the tests run too (story_spec), and its writer
RESULTS_DIR = BENCH_DIR / "results"
PACKAGES = ("personaloom", "langgraph", "langchain-openai", "chromadb", "numpy", "torch")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a tiny run, to check the script works")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON results")
    return p


def machine() -> dict[str, Any]:
    """What the figures were measured on; the load average shows how shared the machine was."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
        "personaloom": source(),
    }


def source() -> dict[str, Any]:
    """Which personaloom was measured: where it was imported from, and the repository's commit
    (``bench/compare.py`` runs a benchmark on an exported older revision too)."""
    module = sys.modules.get("personaloom")
    found = getattr(module, "__file__", None)
    git = ["git", "-C", str(REPO)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                [*git, "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {
        "imported_from": str(Path(found).parent) if found else None,
        "repository_commit": commit or None,
        "uncommitted_changes": dirty,
    }


def write_results(out: Path, name: str, data: dict[str, Any], started: float) -> Path:
    """``<out>/<name>.json`` with the figures, the machine, the command and the wall time."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    payload = {
        "benchmark": name,
        "date": datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join(
        [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_mib() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


# The scripted endpoint, in its own process -------------------------------------------------


@dataclass
class Endpoint:
    base_url: str
    process: subprocess.Popen

    def _ask(self, command: str) -> Any:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stats(self) -> dict[str, Any]:
        return self._ask("stats")

    def digests(self) -> list[str]:
        return self._ask("digests")

    def reset(self) -> None:
        self._ask("reset")


@contextmanager
def scripted_endpoint(
    latency: float = 0.0,
    omit_words_every: int | None = None,
    p95: float | None = None,
) -> Iterator[Endpoint]:
    """``bench/_endpoint.py`` in a child process: personaloom's scripted server, on loopback.
    With ``p95``, latencies are lognormal with median ``latency`` and that 95th percentile."""
    command = [sys.executable, str(BENCH_DIR / "_endpoint.py"), "--latency", str(latency)]
    if omit_words_every:
        command += ["--omit-words-every", str(omit_words_every)]
    if p95:
        command += ["--p95", str(p95)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        if len(ready) != 2 or ready[0] != "READY":
            raise RuntimeError(f"the scripted endpoint did not start: {ready}")
        yield Endpoint(ready[1], process)
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# A benchmark spec and its corpus ------------------------------------------------------------

_SUBJECTS = (
    "harbour crane|school garden|night bus|allotment compost|bakery prices|ridge trail|"
    "library roof|ferry timetable|market stalls|football pitch|river ferry|village fete|"
    "bicycle lane|hospital parking|choir rehearsal|fishing quota|tram extension|orchard frost"
).split("|")
_EVENTS = (
    "was closed again|doubled in cost|won a prize|flooded overnight|got a new manager|"
    "broke down twice|drew a record crowd|needs volunteers|was painted bright green|"
    "lost its funding|reopened after a year|caused a long queue"
).split("|")
_DETAILS = (
    "the children counted every single one|the mayor promised to look into it|nobody knew "
    "who was to blame|the old caretaker laughed about it|a petition went round the street|"
    "the local paper printed three letters|the rain did not stop for days|a dog slept "
    "through all of it|the shop ran out of bread by noon|the teachers held a vote"
).split("|")
NOUNS = "dog ball boat hat cake kite lamp apple drum bell shell sock coat bird tree".split()
VERBS = "jump run sing dance climb swim hide laugh paint build".split()
FEATURES = ["dialogue", "moral", "plot twist", "bad ending"]
SETTINGS = ["forest", "sea", "city", "farm"]


def corpus_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"The {rng.choice(_SUBJECTS)} {rng.choice(_EVENTS)}; {rng.choice(_DETAILS)}. "
        f"Report number {i}: the {rng.choice(_SUBJECTS)} {rng.choice(_EVENTS)}, "
        f"and {rng.choice(_DETAILS)}."
        for i in range(count)
    ]


def write_spec(
    folder: Path,
    *,
    base_url: str,
    samples: int,
    concurrency: int,
    cache_dir: Path,
    embeddings: str = "local",
    name: str = "bench",
    texts: int = 200,
    max_calls: int | None = None,
    max_revisions: int = 1,
    engine: str | None = None,
) -> Path:
    """A TinyStories-style spec aimed at the scripted endpoint; returns the spec path.

    ``samples`` accepted samples meet every target: 4 feature values x 4 settings, so
    ``samples`` is rounded up to a multiple of 4. Personas: 4 per text, 4 related per
    persona, 4 drafts each, so persona mining is a small share of the calls, as in a long run.
    """
    per_value = max(1, -(-samples // 4))
    spec = specs.story_spec(
        base_url,
        name=name,
        instruction="Write a short story for a small child.",
        endpoint={"model": "scripted", "timeout": 60, "structured_output": "json_schema"},
        corpus=[{"jsonl": "corpus.jsonl", "field": "text"}],
        personas={"per_text": 4, "relate_depth": 1, "relate_per_persona": 4, "max_uses": 4},
        traits={
            "feature": {"values": FEATURES, "target": per_value},
            "setting": {"values": SETTINGS, "target": per_value},
        },
        critic={"min_score": 3, "max_revisions": max_revisions},
        **({"engine": engine} if engine else {}),
        budget={"max_calls": max_calls or 40 * samples + 200},
        embeddings={"provider": embeddings, "model": "scripted-embed"}
        if embeddings == "openai"
        else {"provider": "local"},
        cache={"dir": str(cache_dir)},
        concurrency=concurrency,
    )
    files = {
        "corpus.jsonl": "".join(json.dumps({"text": t}) + "\n" for t in corpus_texts(texts)),
        "nouns.txt": specs.words_file(NOUNS),
        "verbs.txt": specs.words_file(VERBS),
    }
    return specs.write_spec(folder, spec, files)


def bench_env() -> None:
    """No user endpoint, key or tracing leaks into a benchmark run."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        os.environ.pop(name, None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class TimedRun:
    """One run of the bench spec, timed from ``run_started`` to ``run_finished``."""

    report: dict[str, Any]
    startup_s: float  # from calling run() to run_started
    window_s: float  # run_started to run_finished
    cpu_s: float  # this process's CPU time in that window
    chat_calls: int  # requests the endpoint got
    endpoint_cpu_s: float
    # CPU time from the first accepted sample to the last, and the samples in between: the
    # cost per sample without start-up and the end of the session (report, chart)
    steady_cpu_s: float = 0.0
    steady_samples: int = 0
    steady_s: float = 0.0  # wall time from the first accepted sample to the last
    # run_started to the end of the generation graph's last node: the window without the
    # session's end (run.json, the report and its chart, a fixed ~0.7 s here)
    generation_s: float = 0.0


def timed_run(
    endpoint: Endpoint,
    folder: Path,
    *,
    samples: int,
    concurrency: int,
    embeddings: str = "local",
    on_start: Callable[[], None] | None = None,
    engine: str | None = None,
    overrides: Any = None,
) -> TimedRun:
    """Write the bench spec into ``folder`` and run it to completion (anything else raises);
    ``on_start`` is called at ``run_started``, when the timed window opens; ``overrides``
    (personaloom.endpoints.Overrides) as on the command line, ``--workers`` for one."""
    from personaloom.runner import run

    spec = write_spec(
        folder / "spec",
        base_url=endpoint.base_url,
        samples=samples,
        concurrency=concurrency,
        cache_dir=folder / "cache",
        embeddings=embeddings,
        engine=engine,
    )
    marks: dict[str, tuple[float, float]] = {}
    accepted: list[int] = []

    wall: dict[str, float] = {}

    def listener(event: dict[str, Any]) -> None:
        if event["event"] in ("run_started", "run_finished"):
            marks[event["event"]] = (time.perf_counter(), time.process_time())
            wall[event["event"]] = time.time()
            if on_start is not None and event["event"] == "run_started":
                on_start()
        elif event["event"] == "sample_accepted":
            marks.setdefault("first_accepted", (time.perf_counter(), time.process_time()))
            marks["last_accepted"] = (time.perf_counter(), time.process_time())
            accepted.append(1)

    before = endpoint.stats()
    called = time.perf_counter()
    result = run(
        spec, out=folder / "run", listeners=[listener], notice=lambda _: None, overrides=overrides
    )
    after = endpoint.stats()
    if result.status != "complete":
        raise RuntimeError(f"benchmark run ended {result.status}: {result.stop_reason}")
    (start, cpu_start), (end, cpu_end) = marks["run_started"], marks["run_finished"]
    generated = graph_ended(folder / "run") - wall["run_started"]
    return TimedRun(
        report=result.report,
        startup_s=start - called,
        window_s=end - start,
        cpu_s=cpu_end - cpu_start,
        chat_calls=after["chat"] - before["chat"],
        endpoint_cpu_s=after["cpu_seconds"] - before["cpu_seconds"],
        steady_cpu_s=marks["last_accepted"][1] - marks["first_accepted"][1],
        steady_samples=len(accepted) - 1,
        steady_s=marks["last_accepted"][0] - marks["first_accepted"][0],
        generation_s=min(max(generated, 0.0), end - start),
    )


def graph_ended(run_dir: Path) -> float:
    """When (``time.time()``) the run's generation graph ended: its last ``node_end`` in the
    trace store, written as each node returns, before the session's report."""
    from personaloom.store import TRACES
    from personaloom.traces import TraceStore

    traces = TraceStore(run_dir / TRACES, readonly=True)
    try:
        return max(e["ts"] for e in traces.events(kind="node_end"))
    finally:
        traces.close()
