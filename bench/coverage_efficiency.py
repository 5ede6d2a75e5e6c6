"""Coverage efficiency: endpoint calls until every target is met, planner against random.

The scripted endpoint's critic confirms a difficulty with a probability that depends on the
value (easy 90%, medium 60%, hard 30%); topics are always confirmed. The spec asks for every
difficulty x topic cell to reach a joint target. Each draft costs exactly two calls (writer,
critic: ``max_revisions: 0``), so the ideal is two calls per expected draft:

    ideal = 2 * sum over cells of target / acceptance rate

The baseline keeps everything else (personas, words, concurrency, the graph) and assigns
trait values uniformly at random, as a plain script would; it also stops as soon as every
target is met. Persona-mining calls are the same for both and reported apart.

    python bench/coverage_efficiency.py [--seeds 10] [--target 3] [--concurrency 4] [--quick]

prints a table and writes coverage_efficiency.json to bench/results/ (or --out DIR).
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import _common as common
import yaml

import personaloom.graphs.generation as generation
from personaloom.graphs.planner import Planner
from personaloom.runner import run
from personaloom.testing.scripted import PersonaloomResponder, ScriptedEndpoint
from personaloom.traces import TraceStore

RATES = {"easy": 0.9, "medium": 0.6, "hard": 0.3}
TOPICS = ["algebra", "geometry", "statistics", "logic"]
TEXTS = [
    "The council published the school bus timetable and a note about the closed bridge.",
    "A beekeeper's diary: the spring swarm settled in the plum tree behind the chapel.",
    "Review: the new climbing gym has good routes but the changing rooms are freezing.",
    "Minutes of the chess club: the tournament moves to the library, snacks are banned.",
    "Recipe for rye bread from a grandmother in Tartu, with notes on the sourdough starter.",
    "The harbour office warns of fog; the ferry to the island leaves an hour later today.",
]


class RandomPlanner(Planner):
    """The baseline: trait values drawn uniformly at random, whatever is missing."""

    def _critic_values(self, fixed, reserved, needy, rng):
        return {**fixed, **{t: rng.choice(list(self.targets[t])) for t in self.critic_traits}}


def write_spec(folder: Path, base_url: str, seed: int, target: int, concurrency: int) -> Path:
    (folder / "corpus").mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(TEXTS):
        (folder / "corpus" / f"{i:02d}.txt").write_text(text + "\n")
    spec = {
        "name": "coverage-bench",
        "task": {
            "instruction": "Write a math word problem.",
            "output": {"problem": "str"},
            "length": {"min_words": 5, "max_words": 400},
        },
        "corpus": [{"path": "corpus/*.txt"}],
        "personas": {"per_text": 3, "relate_depth": 1, "relate_per_persona": 2, "max_uses": 50},
        "traits": {
            "difficulty": {"values": list(RATES), "target": 0},
            "topic": {"values": TOPICS, "target": 0},
        },
        "joint": [{"traits": ["difficulty", "topic"], "target": target}],
        "novelty": {"threshold": 0.99},
        "critic": {"min_score": 1, "max_revisions": 0},
        "stagnation": {"patience": 1000},  # measure the planner, not giving up
        "budget": {"max_calls": 5000},
        "models": {"default": {"base_url": base_url, "timeout": 10, "max_retries": 2}},
        "embeddings": {"provider": "openai", "model": "scripted-embed"},
        "cache": {"enabled": False},
        "concurrency": concurrency,
        "seed": seed,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def one_run(strategy: str, seed: int, target: int, concurrency: int, tmp: Path) -> dict:
    generation.Planner = RandomPlanner if strategy == "random" else Planner
    responder = PersonaloomResponder(accept_rate=RATES)
    folder = tmp / f"{strategy}-{seed}"
    with ScriptedEndpoint(responder) as endpoint:
        spec = write_spec(folder, endpoint.base_url, seed, target, concurrency)
        started = time.perf_counter()
        result = run(spec, out=folder / "run", notice=lambda _: None)
        seconds = time.perf_counter() - started
    traces = TraceStore(result.run_dir / "traces.sqlite", readonly=True)
    calls = Counter(c["agent"] for c in traces.calls())
    traces.close()
    drafting = calls["writer"] + calls["critic"]
    return {
        "strategy": strategy,
        "seed": seed,
        "status": result.status,
        "drafting_calls": drafting,
        "persona_calls": calls["persona_miner"] + calls["persona_relater"],
        "accepted": result.report["accepted"],
        "seconds": round(seconds, 2),
    }


def ideal_calls(target: int) -> float:
    return 2 * sum(target / rate for rate in RATES.values() for _ in TOPICS)


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="runs per strategy")
    parser.add_argument("--target", type=int, default=3, help="accepted samples per cell")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.target = 1, 1
    started = time.perf_counter()
    ideal = ideal_calls(args.target)
    runs = []
    with tempfile.TemporaryDirectory(prefix="personaloom-bench-") as tmp:
        for seed in range(args.seeds):
            for strategy in ("planner", "random"):  # side by side, interleaved
                runs.append(one_run(strategy, seed, args.target, args.concurrency, Path(tmp)))
                r = runs[-1]
                print(
                    f"  seed {seed} {strategy:8} {r['status']:9} drafting calls "
                    f"{r['drafting_calls']:4}  ({r['seconds']:.1f} s)",
                    file=sys.stderr,
                )
    summary = {}
    for strategy in ("planner", "random"):
        mine = [r for r in runs if r["strategy"] == strategy]
        calls = [r["drafting_calls"] for r in mine]
        summary[strategy] = {
            "mean_calls": round(statistics.mean(calls), 1),
            "mean_ratio_to_ideal": round(statistics.mean(calls) / ideal, 3),
            "median_calls": statistics.median(calls),
            "min_calls": min(calls),
            "max_calls": max(calls),
            "median_ratio_to_ideal": round(statistics.median(calls) / ideal, 3),
            "all_complete": all(r["status"] == "complete" for r in mine),
        }
    cells = len(RATES) * len(TOPICS)
    print(
        f"Coverage efficiency: {cells} cells x {args.target} accepted, acceptance by "
        f"difficulty {RATES}, concurrency {args.concurrency}, {args.seeds} seeds\n"
        f"ideal minimum: {ideal:.1f} drafting calls (2 per expected draft)\n"
    )
    rows = [
        [
            strategy,
            s["mean_calls"],
            f"{s['mean_ratio_to_ideal']:.3f}",
            s["median_calls"],
            f"{s['median_ratio_to_ideal']:.3f}",
            s["min_calls"],
            s["max_calls"],
            "yes" if s["all_complete"] else "no",
        ]
        for strategy, s in summary.items()
    ]
    headers = ["strategy", "mean", "x ideal", "median", "x ideal", "min", "max", "all met"]
    print(common.table(headers, rows))
    ratio = summary["random"]["mean_calls"] / summary["planner"]["mean_calls"]
    print(
        f"\nrandom needs {ratio:.2f}x the planner's calls (means); "
        "aim: planner <= 1.15x ideal (the ideal is an expectation: compare the mean)"
    )
    data = {
        "rates": RATES,
        "topics": TOPICS,
        "target_per_cell": args.target,
        "concurrency": args.concurrency,
        "seeds": args.seeds,
        "ideal_calls": round(ideal, 2),
        "summary": summary,
        "random_over_planner": round(ratio, 3),
        "runs": runs,
    }
    path = common.write_results(args.out, "coverage_efficiency", data, started)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
