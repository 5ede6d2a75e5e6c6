"""The streaming engine against the batch engine, side by side in one run (issue 11).

    python bench/engines.py [--repeats 2] [--quick]

Every row runs both engines on the same spec and endpoint, their repeats interleaved, so the
noise of this shared machine hits both alike:

- ``fixed``: the scripted endpoint (own process) sleeps 200 ms per chat request; embeddings by
  the endpoint, so the client is not CPU-bound. Concurrency 16 and 64.
- ``long tail``: latencies drawn from a lognormal with median 200 ms and p95 1 s (a real
  endpoint's tail), concurrency 16. Its share of the ideal is given against the median-based
  ideal and, in brackets, against the mean-based one: by Little's law no client can beat
  ``concurrency / (calls x mean latency)``, and this tail's mean is 1.61 x its median, so the
  median-based ideal is out of reach (at most 62% of it).
- ``MiniLM``: local MiniLM embeddings, CPU-bound (200 ms endpoint, concurrency 64): samples/s
  against the limit MiniLM alone sets, its best encode rate over batch sizes 1 to 64
  measured in this run divided by the texts a run embeds per accepted sample.
- ``cpu``: personaloom's CPU per accepted sample: the benchmark process's CPU time (every
  thread) from the first accepted sample to the last, over the samples accepted in between
  (start-up and the end of the session, its report and chart, are fixed costs, not per
  sample; ``cpu_ms_per_sample_all`` keeps them). Endpoint embeddings and a 0 ms endpoint, so
  no embedding compute is in it; concurrency 1.

The ideal rate of a run is ``concurrency / (calls per sample x latency)`` with the median
latency, ``calls`` measured in the same run, persona mining included (bench/concurrency.py).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

ENGINES = ("batch", "stream")
LATENCY = 0.2


def lognormal_mean(median: float, p95: float) -> float:
    """The mean of the lognormal with this median and 95th percentile (the scripted
    endpoint's ``lognormal_latency``)."""
    sigma = math.log(p95 / median) / 1.6448536269514722
    return median * math.exp(sigma**2 / 2)


def samples_for(concurrency: int) -> int:
    return max(32, 8 * concurrency)


def one_run(
    endpoint: common.Endpoint,
    folder: Path,
    engine: str,
    concurrency: int,
    latency: float,
    embeddings: str,
    samples: int | None = None,
    mean_latency: float | None = None,
) -> dict[str, Any]:
    embedded = _count_local_texts()
    before = embedded[0]
    timed = common.timed_run(
        endpoint,
        folder,
        samples=samples or samples_for(concurrency),
        concurrency=concurrency,
        embeddings=embeddings,
        engine=engine,
    )
    accepted, calls, window = timed.report["accepted"], timed.chat_calls, timed.window_s
    rate = accepted / window
    generation_rate = accepted / timed.generation_s
    ideal = concurrency / (calls / accepted * latency) if latency else None
    return {
        "engine": engine,
        "concurrency": concurrency,
        "accepted": accepted,
        "calls_per_sample": calls / accepted,
        "seconds": window,
        "samples_per_s": rate,
        "ideal_per_s": ideal,
        "efficiency": rate / ideal if ideal else None,
        # The same without the session's end (report and chart, a fixed cost per session):
        # how well the engine keeps the endpoint busy while it generates.
        "generation_s": timed.generation_s,
        "generation_per_s": generation_rate,
        "efficiency_generation": generation_rate / ideal if ideal else None,
        # Little's law: in flight / mean latency bounds the rate. A long tail's mean is above
        # its median, so its median-based ideal cannot be reached by any client.
        "efficiency_mean": rate / (ideal * latency / mean_latency)
        if ideal and mean_latency
        else None,
        "cpu_ms_per_sample": 1000 * timed.steady_cpu_s / max(1, timed.steady_samples),
        "cpu_ms_per_sample_all": 1000 * timed.cpu_s / accepted,
        "texts_per_sample": (embedded[0] - before) / accepted,
    }


_COUNTED: list[int] = [0]


def _count_local_texts() -> list[int]:
    """Count the texts local MiniLM embeds in this process (once patched, stays patched)."""
    from personaloom.local.embed import LocalEmbedder

    if not getattr(LocalEmbedder.embed, "_counted", False):
        original = LocalEmbedder.embed

        def embed(self, texts):  # noqa: ANN001
            _COUNTED[0] += len(texts)
            return original(self, texts)

        embed._counted = True  # type: ignore[attr-defined]
        LocalEmbedder.embed = embed  # type: ignore[method-assign]
    return _COUNTED


def encode_rate(texts: list[str]) -> dict[str, Any]:
    """MiniLM's texts/s at each batch size over ``texts`` (the best of 2 passes each)."""
    from personaloom.local.embed import LocalEmbedder

    rates = {}
    for size in (1, 8, 32, 64):
        embedder = LocalEmbedder(batch_size=size)
        best = 0.0
        for _ in range(2):
            started = time.perf_counter()
            for start in range(0, len(texts), size):
                embedder.embed(texts[start : start + size])
            best = max(best, len(texts) / (time.perf_counter() - started))
        rates[size] = best
    return {"per_batch_size": rates, "best": max(rates.values())}


def pair(runs: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Medians per engine, and the streaming engine's rate over the batch engine's."""
    row: dict[str, Any] = {"label": label}
    for engine in ENGINES:
        mine = [r for r in runs if r["engine"] == engine]
        row[engine] = {
            key: common.median([r[key] for r in mine])
            for key in (
                "samples_per_s",
                "generation_per_s",
                "efficiency",
                "efficiency_generation",
                "efficiency_mean",
                "cpu_ms_per_sample",
                "calls_per_sample",
            )
            if all(r[key] is not None for r in mine)
        }
        row[engine]["all_samples_per_s"] = [round(r["samples_per_s"], 2) for r in mine]
    row["ratio"] = row["stream"]["samples_per_s"] / row["batch"]["samples_per_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-local", action="store_true", help="no MiniLM row")
    args = parser.parse_args(argv)
    latency, levels, local = LATENCY, (16, 64), not args.skip_local
    if args.quick:
        latency, levels, args.repeats, local = 0.01, (2,), 1, False
    common.bench_env()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:

        def both(endpoint, name, c, lat, embeddings, samples=None, mean=None):  # noqa: ANN001, ANN202
            mine = []
            for rep in range(args.repeats):
                for engine in ENGINES if rep % 2 == 0 else ENGINES[::-1]:
                    folder = Path(tmp) / f"{name}-{engine}-{rep}"
                    mine.append(
                        one_run(endpoint, folder, engine, c, lat, embeddings, samples, mean)
                    )
            runs.extend({**r, "row": name} for r in mine)
            return mine

        with common.scripted_endpoint(latency=latency) as endpoint:
            for c in levels:
                rows.append(pair(both(endpoint, f"fixed-c{c}", c, latency, "openai"), f"fixed {c}"))
        if not args.quick:
            with common.scripted_endpoint(latency=latency, p95=5 * latency) as endpoint:
                mean = lognormal_mean(latency, 5 * latency)
                runs16 = both(endpoint, "tail-c16", 16, latency, "openai", mean=mean)
                rows.append(pair(runs16, "long tail 16"))
        with common.scripted_endpoint(latency=0.0) as endpoint:
            cpu = both(endpoint, "cpu-c1", 1, 0.0, "openai", samples=48 if not args.quick else 8)
            rows.append(pair(cpu, "cpu, concurrency 1"))
        limit = None
        if local:
            from overhead import warm_up

            warm_up()
            with common.scripted_endpoint(latency=latency) as endpoint:
                minilm = both(endpoint, "minilm-c64", 64, latency, "local")
            row = pair(minilm, "MiniLM 64")
            texts = [t for t in common.corpus_texts(256)]
            rate = encode_rate(texts)
            per_sample = common.median([r["texts_per_sample"] for r in minilm])
            limit = rate["best"] / per_sample
            row["minilm"] = {**rate, "texts_per_sample": per_sample, "limit_per_s": limit}
            for engine in ENGINES:
                row[engine]["of_limit"] = row[engine]["samples_per_s"] / limit
                row[engine]["of_limit_generation"] = row[engine]["generation_per_s"] / limit
            rows.append(row)

    summary = {"latency_s": latency, "rows": rows, "runs": runs}
    print_summary(summary)
    path = common.write_results(args.out, "engines", summary, started)
    print(f"\nresults: {path}")
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    print("Streaming against batch engine (medians; efficiency = share of the ideal rate)\n")
    table = []
    for row in summary["rows"]:
        b, s = row["batch"], row["stream"]

        def pct(d: dict[str, Any]) -> str:
            if "of_limit" in d:
                return f"{100 * d['of_limit']:.0f}% of MiniLM"
            if "efficiency_mean" in d:
                return f"{100 * d['efficiency']:.0f}% ({100 * d['efficiency_mean']:.0f}% of mean)"
            return f"{100 * d['efficiency']:.0f}%" if "efficiency" in d else "-"

        def generating(d: dict[str, Any]) -> str:
            if "of_limit_generation" in d:
                return f"{100 * d['of_limit_generation']:.0f}% of MiniLM"
            if "efficiency_generation" in d:
                return f"{100 * d['efficiency_generation']:.0f}%"
            return "-"

        table.append(
            [
                row["label"],
                b["samples_per_s"],
                pct(b),
                s["samples_per_s"],
                pct(s),
                generating(s),
                f"{row['ratio']:.2f}x",
                b["cpu_ms_per_sample"],
                s["cpu_ms_per_sample"],
            ]
        )
    headers = [
        "row",
        "batch/s",
        "batch",
        "stream/s",
        "stream",
        "stream, generating",
        "stream/batch",
        "batch CPU ms/sample",
        "stream CPU ms/sample",
    ]
    print(common.table(headers, table))
    for row in summary["rows"]:
        if "minilm" in row:
            m = row["minilm"]
            print(
                f"\nMiniLM alone: {m['best']:.0f} texts/s at its best batch size, "
                f"{m['texts_per_sample']:.2f} texts per sample: limit {m['limit_per_s']:.1f} "
                "samples/s"
            )


if __name__ == "__main__":
    raise SystemExit(main())
