"""Cache and resume: what a second run and a resumed run cost, in wall time and endpoint calls.

Every run is the ``personaloom run`` command in its own process, against the scripted
endpoint (own process, ``--latency`` seconds per chat request), which counts the requests
it gets and fingerprints each one. Four measurements:

- **first run** of a spec, with an empty reply cache;
- **second run** of the same spec into a new run directory, same cache (aim: zero calls);
- **resume after a kill**: a fresh run killed with SIGKILL once half its samples are
  accepted, then ``run --resume``;
- **resume after Ctrl-C**: the same with SIGINT (a graceful stop).

For a resume, "repeated" counts requests whose exact body the endpoint had already been
sent before the interruption, and "for accepted work" counts calls made after the resume
for samples that were already in ``dataset.jsonl`` (aim: none). ``personaloom validate``
gives the wall time of starting the command at all.

    python bench/cache_resume.py [--samples 64] [--latency 0.1] [--concurrency 4] [--quick]
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as common


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "personaloom.cli", *args]


def timed(command: list[str]) -> tuple[float, int]:
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0,):
        raise RuntimeError(f"{command[3:]} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - began, done.returncode


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def ids(path: Path) -> list[str]:
    from personaloom.store import read_jsonl

    return [row["id"] for row in read_jsonl(path)]


def interrupted(
    endpoint: common.Endpoint, spec: Path, run_dir: Path, sig: int, samples: int
) -> dict[str, Any]:
    """Start a run, interrupt it once half the samples are accepted, resume it."""
    endpoint.reset()
    began = time.perf_counter()
    proc = subprocess.Popen(
        cli("run", str(spec), "--out", str(run_dir), "--events"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    dataset = run_dir / "dataset.jsonl"
    deadline = time.monotonic() + 300
    while lines(dataset) < samples // 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        raise RuntimeError(f"the run ended before the interruption: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    first_wall = time.perf_counter() - began
    before = set(ids(dataset))
    first_calls = endpoint.stats()["chat"]
    sent = Counter(endpoint.digests())
    with sqlite3.connect(run_dir / "traces.sqlite") as db:
        last_call = db.execute("SELECT COALESCE(MAX(id), 0) FROM calls").fetchone()[0]

    endpoint.reset()
    wall, _ = timed(cli("run", "--resume", str(run_dir), "--events"))
    resumed = endpoint.digests()
    with sqlite3.connect(run_dir / "traces.sqlite") as db:
        rows = db.execute(
            "SELECT sample_id, cache_hit FROM calls WHERE id > ?", (last_call,)
        ).fetchall()
    after = ids(dataset)
    return {
        "signal": signal.Signals(sig).name,
        "exit_code": code,
        "accepted_before": len(before),
        "calls_before": first_calls,
        "wall_before_s": first_wall,
        "resume_wall_s": wall,
        "resume_calls": len(resumed),
        "resume_cache_hits": sum(1 for _, hit in rows if hit),
        "repeated_requests": sum(1 for d in resumed if d in sent),
        "calls_for_accepted_work": sum(1 for sid, hit in rows if not hit and sid in before),
        "accepted_after": len(after),
        "duplicates_after": len(after) - len(set(after)),
        "lost": len(before - set(after)),
        "total_calls": first_calls + len(resumed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    embeddings, signals = "local", [signal.SIGKILL, signal.SIGINT]
    if args.quick:  # embeddings from the scripted endpoint (no model to load), one resume
        args.samples, args.latency, embeddings, signals = 16, 0.05, "openai", [signal.SIGKILL]
    common.bench_env()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "samples": args.samples,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
    }
    with (
        common.scripted_endpoint(latency=args.latency) as endpoint,
        tempfile.TemporaryDirectory() as tmp,
    ):
        root = Path(tmp)

        def spec(name: str) -> Path:
            return common.write_spec(
                root / f"spec-{name}",
                base_url=endpoint.base_url,
                samples=args.samples,
                concurrency=args.concurrency,
                cache_dir=root / f"cache-{name}",
                embeddings=embeddings,
            )

        cached = spec("cached")
        results["validate_wall_s"] = timed(cli("validate", str(cached)))[0]
        endpoint.reset()
        results["first_wall_s"] = timed(cli("run", str(cached), "--out", str(root / "first")))[0]
        results["first_calls"] = endpoint.stats()["chat"]
        endpoint.reset()
        results["second_wall_s"] = timed(cli("run", str(cached), "--out", str(root / "second")))[0]
        results["second_calls"] = endpoint.stats()["chat"]
        results["second_same_dataset"] = (root / "first" / "dataset.jsonl").read_bytes() == (
            root / "second" / "dataset.jsonl"
        ).read_bytes()
        results["resumes"] = [
            interrupted(endpoint, spec(sig.name), root / sig.name, sig, args.samples)
            for sig in signals
        ]
    print_summary(results)
    path = common.write_results(args.out, "cache_resume", results, started)
    print(f"\nresults: {path}")
    return 0


def print_summary(r: dict[str, Any]) -> None:
    print(
        f"Cache and resume ({r['samples']} samples, concurrency {r['concurrency']}, "
        f"endpoint latency {1000 * r['latency_s']:.0f} ms; each run is a `personaloom run` process)\n"
    )
    rows = [
        ["personaloom validate (process start)", r["validate_wall_s"], "-", "-"],
        ["first run, empty cache", r["first_wall_s"], r["first_calls"], "-"],
        ["second run, same spec", r["second_wall_s"], r["second_calls"], "0 calls"],
    ]
    for x in r["resumes"]:
        rows.append(
            [
                f"run until {x['accepted_before']} accepted, then {x['signal']}",
                x["wall_before_s"],
                x["calls_before"],
                "-",
            ]
        )
        rows.append(
            [
                f"  resume: {x['repeated_requests']} repeated, "
                f"{x['calls_for_accepted_work']} for accepted work",
                x["resume_wall_s"],
                x["resume_calls"],
                "0 for accepted work",
            ]
        )
    print(common.table(["run", "wall s", "endpoint calls", "aim"], rows))
    for x in r["resumes"]:
        print(
            f"{x['signal']}: {x['total_calls']} calls in both sessions vs {r['first_calls']} "
            f"uninterrupted; {x['accepted_after']} accepted, {x['duplicates_after']} duplicated, "
            f"{x['lost']} lost"
        )


if __name__ == "__main__":
    raise SystemExit(main())
