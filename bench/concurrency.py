"""Concurrency scaling: accepted samples per second against an endpoint with a fixed latency.

The scripted endpoint (own process) sleeps ``--latency`` seconds per chat request, like a
model that is never saturated. With ``c`` requests in flight and ``k`` endpoint calls per
accepted sample, no client can beat ``c / (k * latency)`` samples per second: that is the
ideal each measured rate is compared with (``k`` is measured in the same run, persona mining
included). Local MiniLM embeddings, as a default install uses. One extra row runs uneven
drafts (every third writer reply misses its words and is revised), where the batch barrier
makes fast drafts wait for slow ones.

    python bench/concurrency.py [--latency 0.2] [--levels 1,4,16,64] [--repeats 3] [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

AIM_AT_16 = 0.8


def samples_for(concurrency: int) -> int:
    """At least 8 full batches, so the first and last batch weigh little."""
    return max(16, 8 * concurrency)


def one_run(
    endpoint: common.Endpoint,
    folder: Path,
    concurrency: int,
    samples: int,
    latency: float,
    embeddings: str = "local",
) -> dict[str, Any]:
    timed = common.timed_run(
        endpoint, folder, samples=samples, concurrency=concurrency, embeddings=embeddings
    )
    window, accepted, calls = timed.window_s, timed.report["accepted"], timed.chat_calls
    rate = accepted / window
    ideal = concurrency / (calls / accepted * latency)
    return {
        "concurrency": concurrency,
        "accepted": accepted,
        "calls": calls,
        "calls_per_sample": calls / accepted,
        "seconds": window,
        "samples_per_s": rate,
        "ideal_per_s": ideal,
        "efficiency": rate / ideal,
        "personaloom_cores": timed.cpu_s / window,
        "endpoint_cores": timed.endpoint_cpu_s / window,
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per chat request")
    parser.add_argument("--levels", default="1,4,16,64", help="concurrency levels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uneven-at", type=int, default=16, help="0: skip the uneven row")
    parser.add_argument(
        "--embeddings",
        choices=["local", "openai"],
        default="local",
        help="openai: the scripted endpoint embeds (no local model in the way)",
    )
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    embeddings = args.embeddings
    if args.quick:  # embeddings from the scripted endpoint: no model to load
        args.latency, levels, args.repeats, args.uneven_at = 0.01, [2], 1, 2
        embeddings = "openai"
    common.bench_env()
    started = time.perf_counter()
    if embeddings == "local":
        from overhead import warm_up

        warm_up()
    runs: list[dict[str, Any]] = []
    uneven: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:

        def one(endpoint: common.Endpoint, name: str, c: int, samples: int) -> dict[str, Any]:
            return one_run(endpoint, Path(tmp) / name, c, samples, args.latency, embeddings)

        with common.scripted_endpoint(latency=args.latency) as endpoint:
            if not args.quick:
                one(endpoint, "warm", 4, 8)
            for rep in range(args.repeats):  # levels interleaved: noise hits all of them alike
                for c in levels:
                    runs.append(one(endpoint, f"c{c}-{rep}", c, samples_for(c)))
        if args.uneven_at:
            with common.scripted_endpoint(latency=args.latency, omit_words_every=3) as endpoint:
                c = args.uneven_at
                for rep in range(args.repeats):
                    uneven.append(one(endpoint, f"uneven-{rep}", c, samples_for(c)))

    summary = summarise(runs, uneven, levels, args.latency)
    summary["embeddings"] = embeddings
    print_summary(summary)
    path = common.write_results(args.out, "concurrency", summary, started)
    print(f"\nresults: {path}")
    return 0


def _row(group: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("samples_per_s", "ideal_per_s", "efficiency", "calls_per_sample")
    row = {k: common.median([r[k] for r in group]) for k in keys}
    row |= {
        "efficiency_all": [round(r["efficiency"], 3) for r in group],
        "personaloom_cores": common.median([r["personaloom_cores"] for r in group]),
        "endpoint_cores": common.median([r["endpoint_cores"] for r in group]),
        "accepted": group[0]["accepted"],
        "concurrency": group[0]["concurrency"],
    }
    return row


def summarise(
    runs: list[dict[str, Any]], uneven: list[dict[str, Any]], levels: list[int], latency: float
) -> dict[str, Any]:
    rows = [_row([r for r in runs if r["concurrency"] == c]) for c in levels]
    return {
        "latency_s": latency,
        "aim": "at least 80% of ideal at concurrency 16, no collapse at 64",
        "levels": rows,
        "uneven": _row(uneven) if uneven else None,
        "runs": runs + uneven,
    }


def print_summary(s: dict[str, Any]) -> None:
    where = "local MiniLM" if s.get("embeddings", "local") == "local" else "the endpoint"
    print(
        f"Concurrency scaling (endpoint latency {1000 * s['latency_s']:.0f} ms, embeddings by "
        f"{where}, medians)\n"
    )
    shown = [(str(r["concurrency"]), r) for r in s["levels"]]
    if s["uneven"]:
        shown.append((f"{s['uneven']['concurrency']}, uneven drafts", s["uneven"]))
    rows = [
        [
            label,
            r["accepted"],
            r["calls_per_sample"],
            r["samples_per_s"],
            r["ideal_per_s"],
            f"{100 * r['efficiency']:.0f}%",
            r["personaloom_cores"],
            r["endpoint_cores"],
        ]
        for label, r in shown
    ]
    headers = [
        "concurrency",
        "samples",
        "calls/sample",
        "samples/s",
        "ideal/s",
        "of ideal",
        "our cores",
        "endpoint cores",
    ]
    print(common.table(headers, rows))
    print("aim: at least 80% of ideal at 16, no collapse at 64")


if __name__ == "__main__":
    raise SystemExit(main())
