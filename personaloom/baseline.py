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
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from personaloom.agents.writer import length_hint
from personaloom.baseline_report import (  # noqa: F401 - the report side, used and re-exported
    BASELINE,
    BASELINE_TRACES,
    MEASURE_NAMES,
    MEASURES,
    MIN_SAMPLES,
    baseline_section,
    markdown_lines,
    more_diverse,
)
from personaloom.endpoints import Overrides, model_name, resolve_endpoints
from personaloom.errors import ConfigError
from personaloom.ids import stable_seed
from personaloom.llm import LLM, Budget, CallInfo, EndpointError, LLMFailure
from personaloom.prices import Prices
from personaloom.prompts import PromptTemplate, load_template
from personaloom.records import main_text, text_of
from personaloom.spec import Spec
from personaloom.store import TRACES, load_run
from personaloom.traces import TraceStore

NODE = "baseline"  # the trace rows' node; their agent is "writer"


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
    notice: Callable[[str], object] = _stderr,
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
    notice: Callable[[str], object],
) -> None:
    """Put each usable row's embedding in it: the run's embedder over the text fields joined,
    as the run's Chroma ``samples`` collection holds them. An embedder that fails costs the
    embedding measures only, with a warning."""
    from personaloom.embeddings import embed_all, make_embedder

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
            figures.append(f"{MEASURE_NAMES[key]} {shown[0]} vs {shown[1]}")
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
