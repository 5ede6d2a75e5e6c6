"""The report's ``baseline`` section (``personaloom report RUN --baseline N``): the baseline
samples in ``baseline.jsonl`` measured with the run's diversity measures, side by side with
the run's, and its ``report.md`` table. Reads files only; ``personaloom.baseline`` makes the
calls that fill them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from personaloom.prices import Prices, cost_report
from personaloom.records import main_text
from personaloom.report import openings_lines
from personaloom.spec import Spec
from personaloom.store import BASELINE, BASELINE_TRACES, RunStore, StoreError, read_jsonl
from personaloom.traces import TraceStore

MIN_SAMPLES = 2  # the diversity measures compare samples with each other
# The diversity measures that mean something without personas or vocabulary lists.
MEASURES = (
    "samples",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "top_opening",
    "top_opening_share",
    "top_openings",
    "compression_ratio",
    "embeddings",
    "mean_cosine_distance",
    "vendi_score",
)


def _measures(texts: list[str], vectors: list[list[float]]) -> dict[str, Any]:
    """The diversity measures of ``texts``, and ``words``, how many they hold in all
    (distinct-n falls as there are more, so longer samples score lower)."""
    from personaloom.diversity import measure, tokenize

    measured = measure(texts, vectors=vectors or None)
    return {
        **{key: measured[key] for key in MEASURES},
        "words": sum(len(tokenize(text)) for text in texts),
    }


def _usage(run_dir: Path, spec: Spec) -> dict[str, Any]:
    """Calls, tokens, cache hits and errors of every baseline asked for (and cost, with
    prices), counted as the report counts the run's."""
    path = run_dir / BASELINE_TRACES
    if not path.exists():
        return {"calls": None, "tokens": None, "cache_hits": None, "call_errors": None}
    traces = TraceStore(path, readonly=True)
    try:
        usage, tokens = traces.usage(), traces.token_usage()
    finally:
        traces.close()
    result: dict[str, Any] = {
        "calls": usage.calls,
        "tokens": usage.tokens,
        "cache_hits": usage.cache_hits,
        "call_errors": usage.errors,
    }
    if spec.prices:
        result["cost"] = cost_report(tokens, Prices.of(spec))["total"]
    return result


def baseline_section(
    spec: Spec, store: RunStore, vectors: dict[str, list[float]] | None
) -> dict[str, Any] | None:
    """The report's ``baseline`` (None without ``baseline.jsonl``): the baseline's samples
    measured, and the run and the baseline measured at the same size, the run's first
    accepted samples against the baseline's first usable ones (distinct-n and Vendi depend
    on how many samples are measured)."""
    path = store.run_dir / BASELINE
    if not path.exists():
        return None
    try:
        rows = read_jsonl(path)
    except StoreError as exc:  # the rest of the report does not depend on it
        return {"error": str(exc)}
    usable = [r for r in rows if r.get("status") == "ok"]
    unusable = Counter(str(r.get("status")) for r in rows if r.get("status") != "ok")
    size = min(store.accepted, len(usable))
    run_rows = store.dataset.rows[:size]
    run_vectors = [vectors[r["id"]] for r in run_rows if vectors and r["id"] in vectors]

    def baseline(of: list[dict[str, Any]]) -> dict[str, Any]:
        texts = [main_text(spec, r["output"]) for r in of]
        return _measures(texts, [r["embedding"] for r in of if r.get("embedding")])

    return {
        "requested": len(rows),
        "usable": len(usable),
        "unusable": dict(sorted(unusable.items())),
        "models": sorted({str(r.get("model")) for r in rows}),
        "embedder": next((r["embedder"] for r in usable if r.get("embedder")), None),
        **_usage(store.run_dir, spec),
        "diversity": baseline(usable),
        "compared": {
            "samples": size,
            "run_samples": store.accepted,
            "run": _measures([main_text(spec, r["output"]) for r in run_rows], run_vectors),
            "baseline": baseline(usable[:size]),
        },
    }


# (measure, digits or "share", higher is more diverse, meaning)
_ROWS = (
    ("distinct_1", 3, True, "unique words over all words"),
    ("distinct_2", 3, True, "unique word pairs over all pairs"),
    ("distinct_3", 3, True, "unique word triples over all triples"),
    ("top_opening_share", "share", False, "share of samples starting with the same three words"),
    ("compression_ratio", 3, False, "raw size over zlib size; higher is more repetitive"),
    ("mean_cosine_distance", 3, True, "mean pairwise distance of the embeddings"),
    ("vendi_score", 1, True, "effective number of distinct samples"),
)
MEASURE_NAMES = {
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "distinct_3": "distinct-3",
    "top_opening_share": "most common opening",
    "compression_ratio": "compression ratio",
    "mean_cosine_distance": "mean pairwise cosine distance",
    "vendi_score": "Vendi score",
}


def _value(measures: dict[str, Any], key: str, digits: int | str) -> str:
    value = measures.get(key)
    if value is None:
        return "–"
    if digits == "share":
        return f'{value:.0%} ("{measures.get("top_opening")}")'
    return f"{value:.{digits}f}"


def more_diverse(run: Any, baseline: Any, higher: bool, digits: int | str) -> str:
    """Which side the measure favours, at the precision the table shows."""
    if run is None or baseline is None:
        return "–"
    places = 2 if digits == "share" else int(digits)
    a, b = round(run, places), round(baseline, places)
    if a == b:
        return "same"
    return "run" if (a > b) == higher else "baseline"


def _usage_text(section: dict[str, Any]) -> str:
    if section.get("calls") is None:
        return ""
    from personaloom.report import _money

    cost = f", cost {_money(section['cost'])}" if "cost" in section else ""
    return (
        f" Asking for it took {section['calls']} endpoint calls, {section['tokens']} tokens"
        f"{cost}, and {section['cache_hits']} cache hits."
    )


def markdown_lines(section: dict[str, Any]) -> list[str]:
    """The ``## Against a baseline`` section of report.md."""
    if "error" in section:
        return ["## Against a baseline", "", f"Not shown: {section['error']}.", ""]
    compared = section["compared"]
    size, run, base = compared["samples"], compared["run"], compared["baseline"]
    skipped = ", ".join(f"{count} {reason}" for reason, count in section["unusable"].items())
    models = ", ".join(f"`{m}`" for m in section["models"]) or "–"
    lines = [
        "## Against a baseline",
        "",
        f"**{section['usable']}** usable of {section['requested']} samples"
        + (f" ({skipped}, skipped)" if skipped else "")
        + f" from the same writer model ({models}) with the task instruction alone: no "
        "persona, traits or words, no critic and no novelty check, what a plain script gets."
        + _usage_text(section),
        "",
    ]
    if size < MIN_SAMPLES:
        have = "accepted samples" if compared["run_samples"] < MIN_SAMPLES else "usable samples"
        return [*lines, f"Too few {have} to compare (at least {MIN_SAMPLES} on each side).", ""]
    of_run = (
        f"the run's first {size} accepted of {compared['run_samples']}"
        if compared["run_samples"] > size
        else f"the run's {size} accepted"
    )
    of_base = (
        f"the baseline's first {size} of {section['usable']}"
        if section["usable"] > size
        else f"the baseline's {size}"
    )
    lines += [
        f"Both measured on {size} samples ({of_run}, {of_base}): distinct-n and the Vendi "
        "score depend on how many samples are measured. **more diverse** names the side "
        "the measure favours: higher distinct-n, cosine distance and Vendi score are more "
        "varied; a lower opening share and compression ratio are less repetitive.",
        "",
        "| measure | run | baseline | more diverse | meaning |",
        "|---|---|---|---|---|",
        f"| words | {run.get('words', '–')} | {base.get('words', '–')} | – | words measured in "
        "all; distinct-n falls as there are more |",
    ]
    for key, digits, higher, meaning in _ROWS:
        winner = more_diverse(run.get(key), base.get(key), higher, digits)
        lines.append(
            f"| {MEASURE_NAMES[key]} | {_value(run, key, digits)} | {_value(base, key, digits)} | "
            f"{winner} | {meaning} |"
        )
    openings = section["diversity"].get("top_openings") or []
    lines += openings_lines(openings, lead="The baseline's most common openings")
    return [*lines, ""]
