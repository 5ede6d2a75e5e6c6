"""A baseline for the report: what the run's writer model writes from the task instruction alone.

``personaloom report RUN --baseline N`` asks the writer role's model (the spec's endpoint,
the same sampling settings) N times for the task with nothing personaloom adds: no persona,
no trait values, no required words, and no critic, revision or novelty check afterwards. That
is the baseline of the persona and constraint papers: the same model, prompted with the task
alone. The prompt keeps what the user wrote for the task (instruction, length, examples,
output fields; ``prompts/baseline.md.j2``). The N requests differ only in their seed, so the
reply cache keeps N different replies and a second ``--baseline N`` makes no endpoint call.

Calls go through the project's LLM client (retries, repair of an unparseable reply, the
reply cache, token and cost accounting), traced in ``baseline-traces.sqlite`` so that the
run's own call counts and budgets stay the run's. The samples go to ``baseline.jsonl`` with
their embeddings (the run's embedder), and ``build_report`` measures them with the diversity
measures it uses for the run whenever that file exists: a later plain ``personaloom report``
or a resumed session keeps the comparison without any call.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from personaloom.agents.critic import main_text, text_of
from personaloom.agents.writer import length_hint
from personaloom.endpoints import Overrides, model_name, resolve_endpoints
from personaloom.errors import ConfigError
from personaloom.ids import stable_seed
from personaloom.llm import LLM, Budget, CallInfo, EndpointError, LLMFailure
from personaloom.prices import Prices, cost_report
from personaloom.prompts import PromptTemplate, load_template
from personaloom.spec import Spec
from personaloom.store import TRACES, RunStore, StoreError, load_run, read_jsonl
from personaloom.traces import TraceStore

BASELINE = "baseline.jsonl"
BASELINE_TRACES = "baseline-traces.sqlite"
MIN_SAMPLES = 2  # the diversity measures compare samples with each other
NODE = "baseline"  # the trace rows' node; their agent is "writer"
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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def baseline_template(spec: Spec) -> PromptTemplate:
    """``baseline.md.j2`` with the writer template's defaults (temperature, max_tokens): the
    baseline samples with the settings the run's writer sampled with, a spec's own writer
    prompt included."""
    override = spec.prompts.get("writer")
    writer = load_template("writer", spec.resolve(override) if override else None)
    return replace(load_template("baseline"), defaults=dict(writer.defaults))


def baseline_variables(spec: Spec) -> dict[str, Any]:
    """The writer's task inputs without the persona, traits, words and feedback."""
    return {
        "instruction": spec.task.instruction,
        "length": length_hint(SimpleNamespace(spec=spec)),
        "examples": spec.task.examples,
        "fields": list(spec.output_model().model_fields),
    }


def sample_seed(spec: Spec, index: int) -> int:
    """The seed of the baseline's ``index``-th request: one per sample, from the spec's seed."""
    return stable_seed(spec.seed, NODE, index)


@dataclass
class Collected:
    """What one ``--baseline N`` did."""

    path: Path
    requested: int
    usable: int
    calls: int  # endpoint requests made this time (retries and repairs included)
    cache_hits: int
    tokens: int


class Progress:
    """``baseline: done/total`` on stderr: rewritten in place on a terminal, else a line
    every tenth of the way."""

    def __init__(self, total: int, stream: IO[str] | None = None):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.step = max(1, total // 10)

    def __call__(self, done: int) -> None:
        text = f"baseline: {done}/{self.total} samples"
        if self.tty:
            self.stream.write(f"\r{text}" + ("\n" if done == self.total else ""))
        elif done == self.total or done % self.step == 0:
            self.stream.write(text + "\n")
        self.stream.flush()


def run_writer_models(run_dir: Path) -> set[str]:
    """The writer model names the run's sessions used (their ``run_started`` events)."""
    if not (run_dir / TRACES).exists():
        return set()
    traces = TraceStore(run_dir / TRACES, readonly=True)
    try:
        sessions = traces.events(kind="run_started")
    finally:
        traces.close()
    models = (e["data"].get("models") or {} for e in sessions)
    return {m["writer"]["model"] for m in models if (m.get("writer") or {}).get("model")}


async def collect(
    run_dir: Path,
    n: int,
    *,
    overrides: Overrides | None = None,
    notice: Callable[[str], None] = _stderr,
    progress: Callable[[int], None] | None = None,
) -> Collected:
    """Make ``n`` baseline samples for the run in ``run_dir`` and write ``baseline.jsonl``.

    A reply that does not parse into the output fields (after the client's repair request),
    a call that fails after its retries, or an empty main text is recorded as unusable and
    skipped; an endpoint that cannot be reached at all raises ``EndpointError``. Interrupted,
    nothing is written, and the replies already fetched stay in the reply cache."""
    from personaloom.runner import embedded_model, open_cache

    if n < MIN_SAMPLES:
        raise ConfigError(f"a baseline needs at least {MIN_SAMPLES} samples (got {n})")
    spec, _ = load_run(run_dir)
    overrides = overrides or Overrides()
    endpoints, _ = resolve_endpoints(spec, overrides)
    template = baseline_template(spec)
    variables = baseline_variables(spec)
    schema = spec.output_model()
    with ExitStack() as stack:
        cache = open_cache(spec, stack)
        if cache is None:
            notice(
                "warning: the reply cache is off (cache.enabled: false): an interrupted "
                "baseline starts over, and asking again makes every call again"
            )
        start = None
        if endpoints["writer"].embedded:
            from personaloom.local.server import TINY_MODEL_NOTICE

            notice(TINY_MODEL_NOTICE)
            endpoints, start = embedded_model(endpoints, run_dir, stack)
        model = model_name(endpoints["writer"])
        used = run_writer_models(run_dir)
        if used and model not in used:
            notice(
                f"warning: the run's writer called {', '.join(sorted(used))}; the baseline "
                f"calls {model} (give --base-url and --model to compare against the same model)"
            )
        traces = TraceStore(run_dir / BASELINE_TRACES)
        stack.callback(traces.close)
        hits_before = traces.usage().cache_hits
        budget = Budget(prices=Prices.of(spec))
        llm = LLM(
            endpoints,
            traces=traces,
            budget=budget,
            cache=cache,
            concurrency=spec.concurrency,
            start_embedded=start,
            notice=notice,
        )
        done = 0

        async def one(index: int) -> dict[str, Any]:
            nonlocal done
            seed = sample_seed(spec, index)
            row: dict[str, Any] = {
                "id": f"baseline-{index:04d}",
                "index": index,
                "seed": seed,
                "model": model,
            }
            info = CallInfo(agent="writer", node=NODE, sample_id=row["id"])
            try:
                reply = await llm.call("writer", template, variables, schema, info, seed=seed)
            except LLMFailure as exc:
                row.update(status=exc.reason, error=exc.details)
            else:
                output = reply.model_dump(mode="json")
                blank = not main_text(spec, output).strip()
                row.update(status="empty" if blank else "ok", output=output)
            done += 1
            if progress:
                progress(done)
            return row

        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        try:
            rows = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            await llm.aclose()
        _embed(spec, overrides, endpoints, cache, rows, notice)
        path = _write_rows(run_dir / BASELINE, rows)
        return Collected(
            path=path,
            requested=n,
            usable=sum(r["status"] == "ok" for r in rows),
            calls=budget.calls,
            cache_hits=traces.usage().cache_hits - hits_before,
            tokens=budget.tokens,
        )


def _embed(
    spec: Spec,
    overrides: Overrides,
    endpoints: dict[str, Any],
    cache: Any,
    rows: list[dict[str, Any]],
    notice: Callable[[str], None],
) -> None:
    """Put each usable row's embedding in it: the run's embedder over the text fields joined,
    as the run's Chroma ``samples`` collection holds them. An embedder that fails costs the
    embedding measures only, with a warning."""
    from personaloom.embeddings import embed_all
    from personaloom.runner import make_embedder

    usable = [r for r in rows if r["status"] == "ok"]
    if not usable:
        return
    try:
        embedder = make_embedder(spec, overrides, endpoints, cache)
        vectors = embed_all(embedder, [text_of(spec, r["output"]) for r in usable])
    except (EndpointError, ConfigError) as exc:
        notice(
            f"warning: the baseline samples could not be embedded ({exc}); the comparison "
            "leaves out the embedding measures (ask again once the embedder works: the "
            "replies come from the cache)"
        )
        return
    for row, vector in zip(usable, vectors, strict=True):
        row["embedder"] = embedder.name
        row["embedding"] = [round(float(v), 6) for v in vector]


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """baseline.jsonl, replaced whole (a reader sees the old file or the new one)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


# -- the report's baseline section --------------------------------------------------------


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
_NAMES = {
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
            f"| {_NAMES[key]} | {_value(run, key, digits)} | {_value(base, key, digits)} | "
            f"{winner} | {meaning} |"
        )
    openings = section["diversity"].get("top_openings") or []
    if openings:
        lines += [
            "",
            "The baseline's most common openings: "
            + ", ".join(f'"{o["opening"]}" ×{o["count"]}' for o in openings)
            + ".",
        ]
    return [*lines, ""]


def summary(section: dict[str, Any], collected: Collected | None = None) -> list[str]:
    """A few lines for the terminal: what asking cost, and the headline figures side by
    side."""
    if "error" in section:
        return [f"baseline: {section['error']}"]
    compared = section["compared"]
    run, base = compared["run"], compared["baseline"]
    skipped = ", ".join(f"{c} {r}" for r, c in section["unusable"].items())
    line = f"baseline: {section['usable']} usable of {section['requested']} samples"
    line += f" ({skipped}, skipped)" if skipped else ""
    if collected is not None:
        line += (
            f"; {collected.calls} endpoint calls and {collected.tokens} tokens this time, "
            f"{collected.cache_hits} replies from the cache"
        )
    lines = [line]
    if compared["samples"] >= MIN_SAMPLES:
        figures = []
        for key, digits in (("distinct_2", 3), ("top_opening_share", "share"), ("vendi_score", 1)):
            shown = [
                "–" if v is None else f"{v:.0%}" if digits == "share" else f"{v:.{digits}f}"
                for v in (run.get(key), base.get(key))
            ]
            figures.append(f"{_NAMES[key]} {shown[0]} vs {shown[1]}")
        size = compared["samples"]
        lines.append(f"  run vs baseline at {size} samples each: " + ", ".join(figures))
    return lines


__all__ = [
    "BASELINE",
    "BASELINE_TRACES",
    "Collected",
    "Progress",
    "baseline_section",
    "collect",
    "markdown_lines",
    "summary",
]
