"""Ray workers against one process, side by side in one run (issue 12).

    python bench/workers.py [--repeats 2] [--samples 96] [--quick]

- ``cpu-bound``: local MiniLM embeddings and an instant scripted endpoint (own process), so
  the client's CPU is the limit: samples/s of one process (the streaming engine) against
  ``--workers 2`` on a local Ray cluster, repeats interleaved, medians and their ratio.
  The Ray cluster is started once, before the timed runs; its start-up time and the memory
  of its processes (GCS, raylet, the actors once they hold MiniLM) are reported apart.
- ``two nodes``: a simulated two-node cluster (``ray.cluster_utils.Cluster``, a head and one
  more node with one CPU each, on 127.0.0.1): a ``--workers 2`` run joins it by address, with
  one actor on each node, and meets its targets.

Samples/s are the steady rate, from the first accepted sample to the last (an actor loads
MiniLM on its first draft, once); the whole-run rate is kept in the JSON too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common as common

RAY_PROCESSES = ("gcs_server", "raylet", "ray::")


def ray_rss_mib() -> dict[str, float]:
    """Resident memory of this machine's Ray processes, by kind (from /proc)."""
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        kind = next((k for k in RAY_PROCESSES if k in command), None)
        if kind is None or int(entry.name) == os.getpid():
            continue
        if kind == "ray::":
            kind = command.split()[0]  # ray::DraftWorker, ray::IDLE, ray::RuntimeEnvAgent...
        rss = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), 0)
        totals[kind] = totals.get(kind, 0.0) + int(rss) / 1024
    return {k: round(v, 1) for k, v in sorted(totals.items())}


class Peak:
    """The Ray processes' memory at its largest total while a run goes (polled, 0.5 s)."""

    def __init__(self) -> None:
        self.snapshot: dict[str, float] = {}

    @contextlib.contextmanager
    def watching(self, on: bool) -> Iterator[None]:
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.5):
                now = ray_rss_mib()
                if sum(now.values()) > sum(self.snapshot.values()):
                    self.snapshot = now

        thread = threading.Thread(target=poll, daemon=True)
        if on:
            thread.start()
        try:
            yield
        finally:
            done.set()
            if on:
                thread.join()


def one_run(endpoint: common.Endpoint, folder: Path, workers: int, samples: int) -> dict[str, Any]:
    from personaloom.endpoints import Overrides

    timed = common.timed_run(
        endpoint,
        folder,
        samples=samples,
        concurrency=8,
        embeddings="local",
        engine="stream",
        overrides=Overrides(workers=workers) if workers else None,
    )
    accepted = timed.report["accepted"]
    return {
        "workers": workers,
        "accepted": accepted,
        "seconds": timed.window_s,
        # Steady state, first accepted sample to the last: each actor loads MiniLM on its
        # first draft (seconds, once per actor), which a long run does not pay per sample.
        "samples_per_s": timed.steady_samples / max(timed.steady_s, 1e-9),
        "whole_run_samples_per_s": accepted / timed.window_s,
        "coordinator_cores": timed.cpu_s / timed.window_s,
        "startup_s": timed.startup_s,
    }


def two_nodes(endpoint: common.Endpoint, folder: Path, samples: int) -> dict[str, Any]:
    """A ``--workers 2`` run on a simulated two-node cluster, joined by address."""
    import ray
    from ray.cluster_utils import Cluster

    from personaloom.endpoints import Overrides

    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    startup = time.perf_counter() - started
    nodes: list[str] = []

    def listener(event: dict[str, Any]) -> None:
        if event["event"] == "workers_started":
            nodes.extend(event["nodes"])

    try:
        from personaloom.runner import run

        spec = common.write_spec(
            folder / "spec",
            base_url=endpoint.base_url,
            samples=samples,
            concurrency=4,
            cache_dir=folder / "cache",
            embeddings="openai",
        )
        result = run(
            spec,
            out=folder / "run",
            overrides=Overrides(workers=2, ray_address=cluster.address),
            listeners=[listener],
            notice=lambda _: None,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "status": result.status,
        "accepted": result.report["accepted"],
        "nodes": len(set(nodes)),
        "cluster_startup_s": startup,
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, default=96)
    args = parser.parse_args(argv)
    samples, repeats = (8, 1) if args.quick else (args.samples, args.repeats)
    common.bench_env()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        from overhead import warm_up

        warm_up()
        before = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_startup = time.perf_counter() - before
        idle_memory = ray_rss_mib()
        peak = Peak()
        with common.scripted_endpoint(latency=0.0) as endpoint:
            for rep in range(repeats):
                for workers in (0, 2) if rep % 2 == 0 else (2, 0):
                    folder = Path(tmp) / f"w{workers}-{rep}"
                    with peak.watching(workers > 0):
                        runs.append(one_run(endpoint, folder, workers, samples))
        busy_memory = peak.snapshot
        ray.shutdown()
        with common.scripted_endpoint(latency=0.0) as endpoint:
            nodes = two_nodes(endpoint, Path(tmp) / "nodes", 16 if not args.quick else 4)

    rows = {}
    for workers in (0, 2):
        mine = [r for r in runs if r["workers"] == workers]
        rows[workers] = {
            "samples_per_s": common.median([r["samples_per_s"] for r in mine]),
            "all_samples_per_s": [round(r["samples_per_s"], 2) for r in mine],
            "coordinator_cores": common.median([r["coordinator_cores"] for r in mine]),
            "startup_s": common.median([r["startup_s"] for r in mine]),
        }
    summary = {
        "samples": samples,
        "one_process": rows[0],
        "two_workers": rows[2],
        "ratio": rows[2]["samples_per_s"] / rows[0]["samples_per_s"],
        "ray_startup_s": ray_startup,
        "ray_memory_mib_idle": idle_memory,
        "ray_memory_mib_busy": busy_memory,
        "two_nodes": nodes,
        "runs": runs,
    }
    print_summary(summary)
    path = common.write_results(args.out, "workers", summary, started)
    print(f"\nresults: {path}")
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    one, two = summary["one_process"], summary["two_workers"]
    print("CPU-bound (local MiniLM, instant endpoint, concurrency 8): medians\n")
    print(
        common.table(
            ["", "samples/s", "runs", "coordinator cores", "run start-up s"],
            [
                [
                    "one process",
                    one["samples_per_s"],
                    one["all_samples_per_s"],
                    one["coordinator_cores"],
                    one["startup_s"],
                ],
                [
                    "--workers 2",
                    two["samples_per_s"],
                    two["all_samples_per_s"],
                    two["coordinator_cores"],
                    two["startup_s"],
                ],
            ],
        )
    )
    print(f"\n2 workers / 1 process: {summary['ratio']:.2f}x")
    print(f"Ray start-up (ray.init, local, 2 CPUs): {summary['ray_startup_s']:.1f} s")
    print(f"Ray memory idle (MiB): {summary['ray_memory_mib_idle']}")
    print(f"Ray memory during a 2-worker run (MiB): {summary['ray_memory_mib_busy']}")
    n = summary["two_nodes"]
    print(
        f"Two-node cluster (cluster_utils): {n['status']}, {n['accepted']} samples, actors on "
        f"{n['nodes']} nodes; cluster start-up {n['cluster_startup_s']:.1f} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
