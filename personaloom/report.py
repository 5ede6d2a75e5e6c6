"""The run report: ``report.json``, ``report.md`` and ``coverage.png`` in the run directory.

Per trait value and per joint cell: target, accepted, attempts, acceptance rate, status and
the most common rejection reason; targets set aside or given up and why; rejection reasons;
what decontamination caught (with ``novelty.avoid``); diversity measures of the accepted samples
(``personaloom.diversity``), beside a baseline's when ``personaloom report --baseline`` made
one (``personaloom.baseline``); the persona pool (its size, the personas turned away by
reason, persona calls per persona that wrote an accepted sample, the descriptions'
diversity); calls, tokens and cache hits. Everything is rebuilt from the run directory's
files, so ``personaloom report`` regenerates it for any run, finished or not.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from personaloom.coverage import Ledger
from personaloom.prices import Prices, cost_report
from personaloom.records import RejectReason, main_text
from personaloom.runlock import effective_status
from personaloom.spec import Spec, read_words, total_target
from personaloom.store import (
    CHROMA,
    COVERAGE_PNG,
    REPORT_JSON,
    REPORT_MD,
    TRACES,
    RunStore,
    load_run,
    write_json_atomic,
)
from personaloom.traces import TraceStore


def _cell_entry(ledger: Ledger, cell: frozenset) -> dict[str, Any]:
    target, accepted, attempts = ledger.targets[cell], ledger.accepted[cell], ledger.attempts[cell]
    if target == 0:
        status = "no_target"
    elif accepted >= target:
        status = "met"
    elif ledger.given_up(cell):
        status = "given_up"
    elif ledger.set_aside(cell):
        status = "set_aside"
    else:
        status = "short"
    return {
        "target": target,
        "accepted": accepted,
        "attempts": attempts,
        "acceptance_rate": round(accepted / attempts, 3) if attempts else None,
        "status": status,
        "top_reason": ledger.dominant_reason(cell),
    }


def _no_persona(spec: Spec, store: RunStore, ledger: Ledger) -> list[dict[str, Any]]:
    """Persona-trait values still short that no persona in the pool carries (given up when
    the run ended with nothing left to mine; call it only then)."""
    carried = {
        (t, v) for p in store.persona_by_id.values() for t, v in (p.get("traits") or {}).items()
    }
    result = []
    for trait in spec.traits_from("persona"):
        for value in spec.traits[trait].values:
            cell = frozenset({(trait, value)})
            if ledger.deficit(cell) and (trait, value) not in carried:
                result.append(
                    {
                        "trait": trait,
                        "value": value,
                        "target": ledger.targets[cell],
                        "accepted": ledger.accepted[cell],
                        "attempts": ledger.attempts[cell],
                        "reason": "no_persona",
                        "given_up": True,
                    }
                )
    return result


def build_report(
    spec: Spec,
    store: RunStore,
    traces: TraceStore,
    *,
    status: str,
    stop_reason: str | None,
    vectors: dict[str, list[float]] | None = None,
    diversity: bool = True,
    spent: dict[str, Any] | None = None,
    persona_vectors: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """The report as a dict. ``vectors`` (sample id -> embedding) feed the embedding measures;
    ``diversity=False`` skips the diversity measures (cheap enough for a live dashboard);
    ``spent`` is run.json's count of calls, tokens and cost, a floor under the trace store's
    (which a deleted traces.sqlite would reset); ``persona_vectors`` (persona id -> embedding)
    feed the persona section's embedding measures."""
    ledger = Ledger.from_store(spec, store)
    # A run that ended complete or stalled had mined all it could: values no persona carries
    # were given up. Mid-run or after a budget, more personas might still carry them.
    no_persona = _no_persona(spec, store, ledger) if status in ("complete", "stalled") else []
    unreachable = {(s["trait"], s["value"]) for s in no_persona}
    coverage: dict[str, dict[str, Any]] = {}
    unmet = []
    for trait, targets in spec.targets().items():
        coverage[trait] = {}
        for value in targets:
            entry = _cell_entry(ledger, frozenset({(trait, value)}))
            if (trait, value) in unreachable:
                entry.update(status="given_up", top_reason="no_persona")
            coverage[trait][value] = entry
            if entry["accepted"] < entry["target"]:
                unmet.append(
                    {
                        "trait": trait,
                        "value": value,
                        "target": entry["target"],
                        "accepted": entry["accepted"],
                    }
                )
    joint = []
    for (a, b), grid in spec.joint_targets().items():
        cells = []
        for va, vb in grid:
            entry = _cell_entry(ledger, frozenset({(a, va), (b, vb)}))
            cells.append({"values": [va, vb], **entry})
            if entry["accepted"] < entry["target"]:
                trait, value = ledger.name(frozenset({(a, va), (b, vb)}))
                unmet.append(
                    {
                        "trait": trait,
                        "value": value,
                        "target": entry["target"],
                        "accepted": entry["accepted"],
                    }
                )
        joint.append({"traits": [a, b], "cells": cells})
    usage = traces.usage()
    report: dict[str, Any] = {
        "name": spec.name,
        "status": status,
        "stop_reason": stop_reason,
        "accepted": store.accepted,
        "rejected": len(store.rejected.rows),
        "total_target": total_target(spec),
        "coverage": coverage,
        "joint": joint,
        "unmet": unmet,
        "stagnant": ledger.stagnant() + no_persona,
        "rejections": dict(sorted(store.reasons.items())),
        **_memory(spec, store),
        "personas": len(store.persona_by_id),
        "calls": max(usage.calls, (spent or {}).get("calls", 0)),
        "tokens": max(usage.tokens, (spent or {}).get("tokens", 0)),
        "cache_hits": usage.cache_hits,
        "call_errors": usage.errors,
    }
    if spec.prices:
        floor = (spent or {}).get("cost", 0.0)
        report["cost"] = {
            **cost_report(traces.token_usage(), Prices.of(spec), floor),
            "max_cost": spec.budget.max_cost,
        }
    if spec.novelty.avoid:
        report["decontamination"] = decontamination(spec, store, traces)
    if diversity:
        report["diversity"] = measure_diversity(spec, store, vectors)
        from personaloom.baseline_report import baseline_section

        if (baseline := baseline_section(spec, store, vectors)) is not None:
            report["baseline"] = baseline
    report["persona_pool"] = persona_section(store, traces, persona_vectors, diversity=diversity)
    return report


def decontamination(spec: Spec, store: RunStore, traces: TraceStore) -> dict[str, Any]:
    """What the avoid set caught: every draft found to resemble an item (``contamination``
    events, once per draft and revision however often a resume re-ran it), by kind, and how
    many of those drafts were rejected in the end (the others were revised and passed)."""
    loaded = traces.events("avoid_loaded")
    caught: dict[tuple[Any, Any], dict[str, Any]] = {}
    for event in traces.events("contamination"):
        data = event["data"]
        caught[(data.get("sample_id"), data.get("revision"))] = data
    kinds = Counter(c.get("match") for c in caught.values())
    return {
        "items": loaded[-1]["data"].get("items") if loaded else None,
        "ngram": spec.novelty.ngram,
        "threshold": spec.novelty.threshold,
        "caught": len(caught),
        "by_kind": {kind: kinds[kind] for kind in ("ngram", "similar")},
        "items_hit": len({c.get("item") for c in caught.values()}),
        "rejected": store.reasons.get("contaminated", 0),
    }


def _memory(spec: Spec, store: RunStore) -> dict[str, Any]:
    """With novelty memory: its name and the drafts rejected against it (``seen_before``)."""
    if not spec.novelty.memory:
        return {}
    rejected = store.reasons.get(str(RejectReason.SEEN_BEFORE), 0)
    return {"memory": {"name": spec.novelty.memory, "rejected": rejected}}


def measure_diversity(
    spec: Spec, store: RunStore, vectors: dict[str, list[float]] | None
) -> dict[str, Any]:
    from personaloom.diversity import measure

    rows = store.dataset.rows
    used: dict[str, set[str]] = {part: set() for part in spec.vocabulary}
    for row in rows:
        for part, word in (row.get("words") or {}).items():
            used.setdefault(part, set()).add(word)
    sizes = {}
    for part, rel in spec.vocabulary.items():
        path = spec.resolve(rel)
        sizes[part] = len(read_words(path)) if path.is_file() else len(used.get(part, ()))
    embedded = [vectors[r["id"]] for r in rows if vectors and r["id"] in vectors]
    return measure(
        [main_text(spec, r["output"]) for r in rows],
        vectors=embedded or None,
        persona_ids=[(r.get("persona") or {}).get("id") for r in rows],
        persona_pool=len(store.persona_by_id),
        vocabulary_used=used,
        vocabulary_size=sizes,
    )


# -- the persona section ---------------------------------------------------------------------

PERSONA_AGENTS = ("persona_miner", "persona_relater", "persona_checker")


def persona_calls(traces: TraceStore) -> dict[str, int]:
    """Endpoint calls per persona agent, counted as the report's ``calls`` are (no cache hits,
    errors or replays)."""
    rows = traces.calls(
        f"agent IN ({','.join('?' * len(PERSONA_AGENTS))}) AND cache_hit = 0 "
        "AND status != 'error' AND replay_of IS NULL",
        PERSONA_AGENTS,
    )
    counts = Counter(row["agent"] for row in rows)
    return {agent: counts[agent] for agent in PERSONA_AGENTS if counts[agent]}


def persona_section(
    store: RunStore,
    traces: TraceStore,
    vectors: dict[str, list[float]] | None = None,
    *,
    diversity: bool = True,
) -> dict[str, Any]:
    """The persona pool: its size, the personas turned away by reason, the calls that mining
    and relating took per persona that wrote an accepted sample, and (with ``diversity``) how
    varied the pool's descriptions are."""
    pool = list(store.persona_by_id.values())
    reasons = Counter(row["reason"] for row in store.rejected_personas.rows)
    usable = {(s.get("persona") or {}).get("id") for s in store.dataset.rows} - {None}
    calls = persona_calls(traces)
    section: dict[str, Any] = {
        "pool": len(pool),
        "mined": sum(not p.get("depth") for p in pool),
        "related": sum(bool(p.get("depth")) for p in pool),
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "wrote_accepted": len(usable),
        "calls": calls,
        "calls_per_usable_persona": (
            round(sum(calls.values()) / len(usable), 3) if usable else None
        ),
    }
    if diversity:
        section["diversity"] = persona_diversity(pool, vectors)
    return section


def persona_diversity(
    pool: list[dict[str, Any]], vectors: dict[str, list[float]] | None
) -> dict[str, Any]:
    """distinct-n over the persona descriptions, and Vendi and the mean cosine distance over
    their embeddings (the run's Chroma ``personas`` collection)."""
    from personaloom.diversity import distinct_ns, embedding_dispersion, tokenize

    distinct = distinct_ns([tokenize(p["persona"]) for p in pool], (1, 2, 3))
    embedded = [vectors[p["id"]] for p in pool if vectors and p["id"] in vectors]
    dispersion = embedding_dispersion(embedded or None)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "personas": len(pool),
        **{f"distinct_{n}": rounded(distinct[n]) for n in (1, 2, 3)},
        "embeddings": dispersion["embeddings"],
        "mean_cosine_distance": rounded(dispersion["mean_cosine_distance"]),
        "vendi_score": rounded(dispersion["vendi_score"]),
    }


def _persona_lines(section: dict[str, Any]) -> list[str]:
    calls = section.get("calls") or {}
    per = section.get("calls_per_usable_persona")
    lines = [
        "## Personas",
        "",
        f"Pool **{section['pool']}** ({section['mined']} mined from texts, "
        f"{section['related']} related); {section['rejected']} turned away; "
        f"{section['wrote_accepted']} wrote accepted samples. "
        f"{sum(calls.values())} persona calls ("
        + (", ".join(f"{agent} {n}" for agent, n in calls.items()) or "none")
        + f"): {_num(per, 2)} per persona that wrote an accepted sample.",
        "",
    ]
    if section.get("rejected_by_reason"):
        lines += ["| turned away because | personas |", "|---|---:|"]
        for reason, count in sorted(section["rejected_by_reason"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {reason} | {count} |")
        lines.append("")
    if div := section.get("diversity"):
        lines += [
            "| persona diversity | value | meaning |",
            "|---|---|---|",
            "| distinct-1 / 2 / 3 | "
            + " / ".join(_num(div.get(f"distinct_{n}")) for n in (1, 2, 3))
            + " | unique n-grams over all n-grams of the descriptions |",
            f"| Vendi score | {_num(div.get('vendi_score'), 1)} | effective number of distinct "
            f"personas (of {div.get('embeddings', 0)} embedded) |",
            f"| mean pairwise cosine distance | {_num(div.get('mean_cosine_distance'))} | of "
            "persona embeddings; higher is more spread out |",
            "",
        ]
    return lines


# -- report.md -------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


_STATUS = {
    "met": "met",
    "short": "short",
    "set_aside": "set aside",
    "given_up": "**given up**",
    "no_target": "–",
}


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Run report: {report['name']}", ""]
    reason = f" ({report['stop_reason']})" if report.get("stop_reason") else ""
    lines += [
        f"**Status:** {report['status']}{reason}",
        "",
        f"Accepted **{report['accepted']}** of a target of {report['total_target']}; "
        f"{report['rejected']} drafts rejected; {report['personas']} personas; "
        f"{report['calls']} endpoint calls, {report['tokens']} tokens, "
        f"{report['cache_hits']} cache hits, {report['call_errors']} call errors.",
        "",
    ]
    if cost := report.get("cost"):
        lines += _cost_lines(cost)
    if memory := report.get("memory"):
        lines += [
            f"Novelty memory `{memory['name']}`: **{memory['rejected']}** drafts rejected as "
            "near-duplicates of earlier runs' samples (`seen_before`).",
            "",
        ]
    if report.get("coverage") or report.get("joint"):
        lines += ["![coverage](coverage.png)", ""]
    for trait, values in report.get("coverage", {}).items():
        lines += [
            f"## Trait `{trait}`",
            "",
            "| value | target | accepted | attempts | acceptance | status | top rejection |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        for value, e in values.items():
            lines.append(
                f"| {value} | {e['target']} | {e['accepted']} | {e['attempts']} | "
                f"{_pct(e['acceptance_rate'])} | {_STATUS.get(e.get('status'), e.get('status'))} | "
                f"{e.get('top_reason') or '–'} |"
            )
        lines.append("")
    for grid in report.get("joint", []):
        a, b = grid["traits"]
        cols = list(dict.fromkeys(c["values"][1] for c in grid["cells"]))
        rows = list(dict.fromkeys(c["values"][0] for c in grid["cells"]))
        by = {tuple(c["values"]): c for c in grid["cells"]}
        lines += [
            f"## Joint `{a}` × `{b}` (accepted / target, attempts)",
            "",
            f"| {a} \\ {b} | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        for r in rows:
            cells = []
            for c in cols:
                e = by[(r, c)]
                mark = " ✗" if e["status"] == "given_up" else ""
                cells.append(f"{e['accepted']}/{e['target']} ({e['attempts']}){mark}")
            lines.append(f"| {r} | " + " | ".join(cells) + " |")
        lines.append("")
    if report.get("stagnant"):
        lines += [
            "## Targets set aside or given up",
            "",
            "| trait | value | accepted / target | attempts | main reason | given up |",
            "|---|---|---:|---:|---|---|",
        ]
        for s in report["stagnant"]:
            lines.append(
                f"| {s['trait']} | {s['value']} | {s['accepted']}/{s['target']} | "
                f"{s['attempts']} | {s['reason']} | {'yes' if s['given_up'] else 'no'} |"
            )
        lines.append("")
    if dec := report.get("decontamination"):
        lines += _decontamination_lines(dec)
    if report.get("rejections"):
        lines += ["## Rejection reasons", "", "| reason | drafts |", "|---|---:|"]
        for name, count in sorted(report["rejections"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {count} |")
        lines.append("")
    if div := report.get("diversity"):
        lines += _diversity_lines(div)
    if baseline := report.get("baseline"):
        from personaloom.baseline_report import markdown_lines

        lines += markdown_lines(baseline)
    if personas := report.get("persona_pool"):
        lines += _persona_lines(personas)
    return "\n".join(lines).rstrip() + "\n"


def _cost_lines(cost: dict[str, Any]) -> list[str]:
    limit = f" of a budget of {_money(cost['max_cost'])}" if cost.get("max_cost") else ""
    lines = [
        "## Cost",
        "",
        f"**{_money(cost['total'])}**{limit}, at the spec's prices per 1M tokens, from the "
        "token usage each endpoint reported (cache hits cost nothing).",
        "",
        "| agent | calls | input tokens | output tokens | cost |",
        "|---|---:|---:|---:|---:|",
    ]
    for agent, e in cost.get("by_agent", {}).items():
        lines.append(
            f"| {agent} | {e['calls']} | {e['input_tokens']} | {e['output_tokens']} | "
            f"{_money(e['cost'])} |"
        )
    if cost.get("unpriced_models"):
        names = ", ".join(f"`{m}`" for m in cost["unpriced_models"])
        lines += ["", f"No price in the spec for {names}: counted as free."]
    return [*lines, ""]


def _money(value: float | None) -> str:
    """Enough digits for a run of a few cents to show (prices are per million tokens)."""
    return "–" if value is None else f"{value:.4f}" if value >= 0.01 else f"{value:.6f}"


def _decontamination_lines(dec: dict[str, Any]) -> list[str]:
    words = f"{dec['ngram']} words in a row" if dec.get("ngram") else "no n-gram check"
    kinds = dec.get("by_kind") or {}
    return [
        "## Decontamination",
        "",
        f"{_num(dec.get('items'))} avoided items; a draft was caught sharing {words} with "
        f"one, or at cosine similarity {dec['threshold']:g} or more.",
        "",
        "| caught | by shared words | by similarity | items hit | rejected in the end |",
        "|---:|---:|---:|---:|---:|",
        f"| {dec['caught']} | {kinds.get('ngram', 0)} | {kinds.get('similar', 0)} | "
        f"{dec['items_hit']} | {dec['rejected']} |",
        "",
    ]


def _diversity_lines(div: dict[str, Any]) -> list[str]:
    top = div.get("top_opening")
    rows = [
        (
            "distinct-1 / 2 / 3",
            " / ".join(_num(div.get(f"distinct_{n}")) for n in (1, 2, 3)),
            "unique n-grams over all n-grams; higher is more varied",
        ),
        (
            "most common opening",
            f'"{top}": {_pct(div.get("top_opening_share"))}' if top else "–",
            "share of samples that start with the same three words; lower is better",
        ),
        (
            "compression ratio",
            _num(div.get("compression_ratio")),
            "raw size over zlib size of all samples; lower is less repetitive",
        ),
        (
            "mean pairwise cosine distance",
            _num(div.get("mean_cosine_distance")),
            "of sample embeddings; higher is more spread out",
        ),
        (
            "Vendi score",
            _num(div.get("vendi_score"), 1),
            f"effective number of distinct samples (of {div.get('embeddings', 0)} embedded)",
        ),
        (
            "persona usage entropy",
            _num(div.get("persona_entropy_normalised")),
            f"normalised (1 = even use); {div.get('personas_used', 0)} personas wrote samples",
        ),
    ]
    lines = [
        f"## Diversity of the {div.get('samples', 0)} accepted samples",
        "",
        "| measure | value | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {meaning} |" for name, value, meaning in rows]
    vocab = div.get("vocabulary_coverage") or {}
    if vocab:
        lines += ["", "| vocabulary | words used | list size | coverage |", "|---|---:|---:|---:|"]
        for part, e in vocab.items():
            lines.append(f"| {part} | {e.get('used')} | {e.get('size')} | {_pct(e.get('share'))} |")
    lines += openings_lines(div.get("top_openings") or [])
    return [*lines, ""]


def openings_lines(openings: list[dict[str, Any]], lead: str = "Most common openings") -> list[str]:
    """report.md's paragraph naming the most common openings and their counts (none, no
    lines); the baseline's section has one too."""
    if not openings:
        return []
    listed = ", ".join(f'"{o["opening"]}" ×{o["count"]}' for o in openings)
    return ["", f"{lead}: {listed}."]


def write_report(run_dir: Path, report: dict[str, Any]) -> Path:
    """Write report.json, report.md and (with traits) coverage.png; returns report.json."""
    path = run_dir / REPORT_JSON
    write_json_atomic(path, report)
    (run_dir / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
    if report.get("coverage") or report.get("joint"):
        from personaloom.chart import coverage_chart

        coverage_chart(report, run_dir / COVERAGE_PNG)
    return path


def run_vectors(
    run_dir: Path, meta: dict[str, Any], url: str | None = None, collection: str = "samples"
) -> dict[str, list[float]]:
    """Sample (or persona) embeddings from the run's Chroma store: its collection on the
    server at ``url`` or the one run.json names (read only: a server may hold it while the run
    goes on), else ``chroma/`` (only when no process is running it)."""
    from personaloom.vectors import NoveltyIndex, run_prefix, stored_vectors

    url = url or meta.get("novelty_store")
    if url:
        return stored_vectors(url, run_prefix(meta.get("store_key", "")) + collection)
    if not (run_dir / CHROMA).exists():
        return {}
    return NoveltyIndex(run_dir / CHROMA).vectors(collection)


def regenerate(
    run_dir: Path, *, url: str | None = None, notice: Callable[[str], object] | None = None
) -> Path:
    """Rebuild the report of any run directory from its files, and write it."""
    return write_report(run_dir, rebuild(run_dir, url=url, notice=notice))


def rebuild(
    run_dir: Path, *, url: str | None = None, notice: Callable[[str], object] | None = None
) -> dict[str, Any]:
    """The report of any run directory, built from its files (and its Chroma store's
    embeddings; ``url`` when its server moved) and written nowhere: readers such as
    ``personaloom export`` must not change the run. A server that does not answer costs the
    embedding measures only, with a ``notice``."""
    from personaloom.errors import StoreUnavailable

    spec, meta = load_run(run_dir)
    store = RunStore(run_dir, readonly=True)
    traces = TraceStore(run_dir / TRACES, readonly=True)
    status = effective_status(run_dir, meta)
    vectors: dict = {}
    persona_vectors: dict = {}
    if status != "running" or url or meta.get("novelty_store"):
        try:
            vectors = run_vectors(run_dir, meta, url)
            persona_vectors = run_vectors(run_dir, meta, url, "personas")
        except StoreUnavailable as exc:
            message = f"warning: {exc}; the report leaves out the embedding measures"
            (notice or functools.partial(print, file=sys.stderr))(message)
    try:
        report = build_report(
            spec,
            store,
            traces,
            status=status,
            stop_reason=meta.get("stop_reason"),
            vectors=vectors,
            spent=meta.get("spent"),
            persona_vectors=persona_vectors,
        )
    finally:
        traces.close()
    return report


__all__ = ["build_report", "rebuild", "regenerate", "render_markdown", "write_report"]
