"""Soak (``make soak``, not in CI or ``make bench``): one long run against the scripted
endpoint answering at once, with endpoint embeddings, sampled every ``--every`` accepted
samples: wall time per sample, resident memory, and the size of each run-directory file.

Aims: memory and file sizes grow linearly or stay flat, and the time per sample of the last
thousand is no more than 20% above the first thousand's.

    python bench/soak.py [--samples 5000] [--every 250] [--concurrency 4] [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

AIM_SLOWDOWN = 1.20
FILES = ("dataset.jsonl", "rejected.jsonl", "personas.jsonl", "traces.sqlite", "checkpoints.sqlite")


def _sizes(run_dir: Path) -> dict[str, float]:
    sizes = {name: 0.0 for name in FILES}
    for name in FILES:
        for path in run_dir.glob(name + "*"):  # with SQLite's -wal and -shm
            sizes[name] += path.stat().st_size / 2**20
    chroma = run_dir / "chroma"
    sizes["chroma/"] = common.dir_mib(chroma) if chroma.exists() else 0.0
    return sizes


def soak(samples: int, every: int, concurrency: int) -> dict[str, Any]:
    from personaloom.runner import run

    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, common.scripted_endpoint() as ep:
        folder = Path(tmp)
        spec = common.write_spec(
            folder / "spec",
            base_url=ep.base_url,
            samples=samples,
            concurrency=concurrency,
            cache_dir=folder / "cache",
            embeddings="openai",
            texts=max(200, samples // 8),
        )
        run_dir = folder / "run"
        started = [0.0]

        def listener(event: dict[str, Any]) -> None:
            if event["event"] == "run_started":
                started[0] = time.perf_counter()
            elif event["event"] == "sample_accepted" and event["accepted"] % every == 0:
                points.append(
                    {
                        "accepted": event["accepted"],
                        "seconds": round(time.perf_counter() - started[0], 3),
                        "rss_mib": round(common.rss_mib(), 1),
                        **{k: round(v, 3) for k, v in _sizes(run_dir).items()},
                    }
                )
                print("  ".join(f"{k} {v}" for k, v in points[-1].items()), flush=True)

        result = run(spec, out=run_dir, listeners=[listener], notice=lambda _: None)
        if result.status != "complete":
            raise RuntimeError(f"the soak run ended {result.status}: {result.stop_reason}")
    return {"points": points, "accepted": result.report["accepted"]}


def _per_sample_ms(points: list[dict[str, Any]], first: int, last: int) -> float:
    """Milliseconds per accepted sample between the points at ``first`` and ``last``."""
    at = {p["accepted"]: p["seconds"] for p in points}
    at.setdefault(0, 0.0)
    return (at[last] - at[first]) / (last - first) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.every = 1000, 100
    common.bench_env()
    began = time.perf_counter()
    data = soak(args.samples, args.every, args.concurrency)
    points = data["points"]
    span = min(1000, args.samples // 5)
    top = points[-1]["accepted"]
    first_ms = _per_sample_ms(points, 0, span)
    last_ms = _per_sample_ms(points, top - span, top)
    first, last = points[0], points[-1]
    growth = {
        key: round((last[key] - first[key]) / (last["accepted"] - first["accepted"]) * 1000, 3)
        for key in last
        if key not in ("accepted", "seconds")
    }
    summary = {
        "samples": args.samples,
        "concurrency": args.concurrency,
        "ms_per_sample_first": round(first_ms, 2),
        "ms_per_sample_last": round(last_ms, 2),
        "slowdown": round(last_ms / first_ms, 3),
        "aim_slowdown": AIM_SLOWDOWN,
        "growth_per_1000_samples_mib": growth,
    }
    print()
    rows = [[k, v] for k, v in summary.items() if not isinstance(v, dict)]
    rows += [[f"{k}: MiB per 1,000 samples", v] for k, v in growth.items()]
    print(common.table(["measure", "value"], rows))
    verdict = "meets" if summary["slowdown"] <= AIM_SLOWDOWN else "misses"
    print(f"\nslowdown last/first {span}: {summary['slowdown']:.2f} ({verdict} the 1.20 aim)")
    common.write_results(args.out, "soak", {**summary, "points": points}, began)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
