"""Persona quality on the embedded model, before and after the persona gate (issue 14).

    python bench/persona_quality.py [--base main] [--samples 20] [--quick] [--out DIR]

Runs one TinyStories-style spec twice on the embedded SmolLM2-135M, with personas mined from
real one-line Debian package descriptions (``bench/corpus/debian-packages.jsonl``, from this
machine's ``dpkg-query``): once on ``--base`` (a git revision exported as in
``bench/compare.py``: the behaviour before), once on the working tree. Each run gets a fresh
reply cache. Then, for both, with the working tree's gate and MiniLM embeddings:

- the share of accepted samples written by a persona the gate would reject, by reason;
- persona calls (miner, relater, checker) per persona that wrote an accepted sample;
- the persona pool's diversity (distinct-2, Vendi over MiniLM embeddings of its descriptions).

The embedded model answers one request at a time, so a run of 20 samples takes 15 to 60
minutes on 2 shared cores: ``make bench`` does not run this; ``make bench-personas`` does.
``--quick`` runs both sides against the scripted endpoint (to check the script works).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import _common as common
import compare
import yaml

from personaloom.agents.persona_gate import EXAMPLE_ROLES, PersonaGate, prompt_examples
from personaloom.corpus import Corpus
from personaloom.diversity import distinct_n, embedding_dispersion, tokenize
from personaloom.prompts import load_template
from personaloom.report import persona_calls
from personaloom.store import TRACES, RunStore, load_run
from personaloom.traces import TraceStore

CORPUS = common.BENCH_DIR / "corpus" / "debian-packages.jsonl"
NOUNS = common.REPO / "examples" / "tiny-stories" / "vocab" / "nouns.txt"
SIDES = ("before", "after")


def write_spec(folder: Path, samples: int, base_url: str | None) -> Path:
    """The demo's story task and critic bar, the spec's persona defaults, the package corpus.
    ``base_url`` (the scripted endpoint, for ``--quick``) or the embedded model."""
    per_value = max(1, samples // 2)
    spec: dict[str, Any] = {
        "name": "persona-quality",
        "task": {
            "instruction": (
                "Write a short, simple story (about 100 words) that a 3-4 year old can "
                "understand. Use short sentences and only words a small child knows. "
                "Give the story a title."
            ),
            "output": {"title": "str", "story": "str"},
            "length": {"min_words": 60, "max_words": 400},
        },
        "corpus": [{"jsonl": str(CORPUS)}],
        "traits": {
            "feature": {"values": ["dialogue", "moral"], "target": per_value},
            "setting": {"values": ["forest", "sea"], "target": per_value},
        },
        "vocabulary": {"noun": str(NOUNS)},
        # SmolLM2-135M cannot judge stories (examples/tiny-stories/demo.yaml): the bar is the
        # deterministic checks and the novelty check, as in the demo.
        "critic": {"min_score": 1, "check_traits": False, "max_revisions": 2},
        "budget": {"max_calls": 40 * samples},
        # A story is ~150 tokens: 400 (not the template's 900) bounds a runaway reply, and
        # 600 s covers a slow reply on cores shared with other model servers.
        "models": {"default": {"timeout": 600}, "writer": {"max_tokens": 400}},
        "concurrency": 1,
        "seed": 0,
    }
    if base_url:
        spec["models"]["default"].update(base_url=base_url, timeout=10)
        spec["embeddings"] = {"provider": "openai", "model": "scripted-embed"}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_side(spec: Path, run_dir: Path, pythonpath: Path | None, cache: Path) -> float:
    """One ``personaloom run`` in its own process; returns its wall seconds."""
    env = {**os.environ, "PERSONALOOM_CACHE_DIR": str(cache)}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    else:
        env.pop("PYTHONPATH", None)
    command = [sys.executable, "-c", "from personaloom.cli import main; raise SystemExit(main())"]
    command += ["run", str(spec), "--out", str(run_dir)]
    began = time.perf_counter()
    # Not from the repository: its personaloom/ folder would shadow the base on sys.path.
    done = subprocess.run(command, env=env, cwd=run_dir.parent, capture_output=True, text=True)
    if done.returncode not in (0, 3, 4):  # complete, budget, stalled: all are results
        raise SystemExit(f"the run in {run_dir} failed ({done.returncode}):\n{done.stderr}")
    return time.perf_counter() - began


def embedder(quick: bool):
    if quick:
        from personaloom.testing.scripted import embed

        return lambda texts: [embed(t) for t in texts]
    from personaloom.local.embed import LocalEmbedder

    return LocalEmbedder().embed


def measure(run_dir: Path, embed) -> dict[str, Any]:
    """What the gate of the working tree makes of a run's accepted samples and pool."""
    spec, meta = load_run(run_dir)
    store = RunStore(run_dir, readonly=True)
    traces = TraceStore(run_dir / TRACES, readonly=True)
    corpus = Corpus(spec)
    texts = dict(corpus.text(i) for i in range(len(corpus)))
    examples = prompt_examples(load_template(role) for role in EXAMPLE_ROLES)
    gate = PersonaGate(examples, embed(examples))
    pool = list(store.persona_by_id.values())

    def source(persona: dict[str, Any]) -> tuple[str, str]:
        parent = store.persona_by_id.get(persona.get("parent_id") or "")
        if parent:
            return parent["persona"], f"its parent persona {parent['id']}"
        return texts.get(persona.get("source_text_id") or "", ""), "its source text"

    sources = [source(p) for p in pool]
    vectors = embed([p["persona"] for p in pool] + [s for s, _ in sources])
    verdicts = {}
    for i, (persona, (text, what)) in enumerate(zip(pool, sources, strict=True)):
        finding = gate.check(persona["persona"], vectors[i], text, vectors[len(pool) + i], what)
        verdicts[persona["id"]] = finding.reason.value if finding else None
    samples = store.dataset.rows
    flagged = Counter(
        verdicts[s["persona"]["id"]] for s in samples if verdicts.get(s["persona"]["id"])
    )
    usable = {s["persona"]["id"] for s in samples}
    calls = persona_calls(traces)
    total_calls = traces.usage().calls
    traces.close()
    dispersion = embedding_dispersion(vectors[: len(pool)] or None)
    return {
        "status": meta.get("status"),
        "accepted": len(samples),
        "calls": total_calls,
        "persona_calls": sum(calls.values()),
        "persona_calls_by_agent": calls,
        "pool": len(pool),
        "turned_away": len(store.rejected_personas.rows),
        "turned_away_by_reason": dict(Counter(r["reason"] for r in store.rejected_personas.rows)),
        "pool_gate_would_reject": sum(v is not None for v in verdicts.values()),
        "personas_that_wrote_accepted": len(usable),
        "calls_per_usable_persona": round(sum(calls.values()) / len(usable), 3) if usable else None,
        "samples_by_rejectable_persona": sum(flagged.values()),
        "share_by_rejectable_persona": round(sum(flagged.values()) / len(samples), 4)
        if samples
        else None,
        "rejectable_by_reason": dict(flagged),
        "persona_distinct_2": distinct_n([tokenize(p["persona"]) for p in pool], 2),
        "persona_vendi": dispersion["vendi_score"],
        "accepted_personas": [s["persona"]["text"] for s in samples],
        "verdicts": {p["persona"]: verdicts[p["id"]] for p in pool},
    }


ROWS = (
    ("accepted samples", "accepted", ""),
    ("endpoint calls", "calls", ""),
    ("persona calls (miner, relater, checker)", "persona_calls", ""),
    ("personas that wrote accepted samples", "personas_that_wrote_accepted", ""),
    ("persona calls per such persona", "calls_per_usable_persona", "lower"),
    ("accepted samples by a persona the gate rejects", "share_by_rejectable_persona", "< 5%"),
    ("persona pool", "pool", ""),
    ("pool personas the gate rejects", "pool_gate_would_reject", ""),
    ("personas turned away while running", "turned_away", ""),
    ("persona distinct-2", "persona_distinct_2", ""),
    ("persona Vendi (MiniLM)", "persona_vendi", ""),
    ("wall seconds", "wall_seconds", ""),
)


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="git revision measured as 'before'")
    parser.add_argument("--samples", type=int, default=20, help="accepted samples per run")
    parser.add_argument(
        "--sides",
        default=",".join(SIDES),
        help="which runs to make now (the other is measured from the last invocation's run)",
    )
    args = parser.parse_args(argv)
    common.bench_env()
    samples = 2 if args.quick else args.samples
    sides = [side for side in SIDES if side in args.sides.split(",")]
    started = time.perf_counter()
    runs = args.out / "persona_quality-runs"  # kept: to look at the personas, or re-measure
    runs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {side: {"run_dir": str(runs / side)} for side in SIDES}
    previous = args.out / "persona_quality.json"
    for side in set(SIDES) - set(sides):  # measured again from its last run, if there is one
        if previous.exists() and (runs / side / "run.json").exists():
            earlier = json.loads(previous.read_text()).get(side) or {}
            results[side]["wall_seconds"] = earlier.get("wall_seconds")
    with tempfile.TemporaryDirectory(prefix="personaloom-personas-") as tmp:
        base_path = compare.export(args.base, Path(tmp))
        with common.scripted_endpoint() if args.quick else nullcontext() as endpoint:
            spec = write_spec(runs, samples, endpoint.base_url if endpoint else None)
            for side in sides:
                run_dir = runs / side
                shutil.rmtree(run_dir, ignore_errors=True)
                shutil.rmtree(runs / f"cache-{side}", ignore_errors=True)
                seconds = run_side(
                    spec, run_dir, base_path if side == "before" else None, runs / f"cache-{side}"
                )
                results[side]["wall_seconds"] = round(seconds, 1)
    embed = embedder(args.quick)
    for side in SIDES:
        if (runs / side / "run.json").exists():
            results[side].update(measure(runs / side, embed))
    rows = [
        (name, results["before"].get(key), results["after"].get(key), aim)
        for name, key, aim in ROWS
    ]
    print(common.table(["", f"before ({args.base})", "after", "aim"], rows))
    for side in SIDES:
        r = results[side]
        if "accepted" not in r:
            continue
        print(
            f"{side}: accepted samples by a rejectable persona, by reason "
            f"{r['rejectable_by_reason']}; turned away {r['turned_away_by_reason']}; "
            f"persona calls {r['persona_calls_by_agent']}"
        )
    data = {"base": args.base, "samples": samples, "corpus": str(CORPUS.relative_to(common.REPO))}
    common.write_results(args.out, "persona_quality", {**data, **results}, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
