"""The ``mine_personas`` node: grow the persona pool only as far as the next batch needs.

The spec's ready-made personas (``personas.pool``, read and sampled by ``personaloom.pool``)
are admitted first, all at once, so the planner sees every label they carry. Then related
personas (Persona-to-Persona) of pool members, then new corpus texts (Text-to-Persona).
Every new persona passes the persona gate (``agents.persona_gate``; with ``personas.check:
llm`` also the persona-checker; a pool persona has no source to compare with) and is checked
against the pool in Chroma; one turned away goes to ``rejected_personas.jsonl`` with its
reason. Only pool members are ever related from, so a rejected persona costs no further call.
Ids are deterministic, so a node re-run after a crash adds (or turns away) nothing twice.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from langgraph.runtime import Runtime

from personaloom.agents import novelty, persona_checker, persona_miner, persona_relater
from personaloom.agents.models import PersonaRejectReason
from personaloom.agents.persona_gate import (
    EXAMPLE_ROLES,
    GateFinding,
    PersonaGate,
    prompt_examples,
    shape_finding,
)
from personaloom.embeddings import Embedder, embed_all
from personaloom.graphs.context import Context
from personaloom.graphs.state import GenerationState
from personaloom.ids import short_id
from personaloom.llm import BudgetExhausted, LLMFailure
from personaloom.prompts import PromptTemplate
from personaloom.vectors import PERSONAS


async def mine_personas(state: GenerationState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    settings = ctx.spec.personas
    pool_cursor = state.get("pool_cursor", 0)
    corpus_cursor = state.get("corpus_cursor", 0)
    relate_cursor = state.get("relate_cursor", 0)
    needed = state.get("need_personas", 0)
    wanted = state.get("wanted") or {}
    added = 0
    exhausted = False
    while added < needed:
        pool = list(ctx.store.persona_by_id.values())
        pending = [
            (i, p)
            for i, p in enumerate(pool)
            if i >= relate_cursor and p["depth"] < settings.relate_depth
        ]
        try:
            if pool_cursor < len(ctx.pool):
                added += await _admit(ctx, [Candidate(p, "", "") for p in ctx.pool[pool_cursor:]])
                pool_cursor = len(ctx.pool)
            elif pending:
                take = pending[
                    : min(
                        ctx.spec.concurrency,
                        math.ceil((needed - added) / settings.relate_per_persona),
                    )
                ]
                added += await _relate(ctx, [p for _, p in take], wanted)
                relate_cursor = take[-1][0] + 1
            elif corpus_cursor < len(ctx.corpus):
                count = min(ctx.spec.concurrency, math.ceil((needed - added) / settings.per_text))
                indices = list(range(corpus_cursor, min(len(ctx.corpus), corpus_cursor + count)))
                added += await _mine(ctx, indices, wanted)
                corpus_cursor = indices[-1] + 1
            else:
                exhausted = True
                break
        except BudgetExhausted:
            break
    ctx.events.emit("personas", pool=len(ctx.store.persona_by_id), added=added, exhausted=exhausted)
    return {
        "pool_cursor": pool_cursor,
        "corpus_cursor": corpus_cursor,
        "relate_cursor": relate_cursor,
        "pool_exhausted": exhausted,
        "need_personas": 0,
        "wanted": {},
    }


@dataclass(frozen=True)
class Candidate:
    """A new persona's row for personas.jsonl, and the source the gate compares it with: the
    corpus text it was mined from, or the persona it was related to."""

    row: dict[str, Any]
    source: str
    source_name: str


async def _mine(ctx: Context, indices: list[int], wanted: dict[str, list[str]]) -> int:
    settings = ctx.spec.personas

    async def one(index: int) -> list[Candidate]:
        text_id, text = ctx.corpus.text(index)
        relation = settings.relations[index % len(settings.relations)]
        try:
            found = await persona_miner.mine(
                ctx, text_id, text, relation, settings.per_text, wanted
            )
        except LLMFailure as exc:
            ctx.events.emit("persona_mining_failed", text_id=text_id, error=str(exc))
            return []
        return [
            Candidate(
                {
                    "id": short_id("p", text_id, relation, i),
                    "persona": persona,
                    "depth": 0,
                    "source_text_id": text_id,
                    "relation": relation,
                    "parent_id": None,
                    **({"traits": labels} if labels else {}),
                },
                text,
                "its source text",
            )
            for i, (persona, labels) in enumerate(found)
        ]

    batches = await asyncio.gather(*(one(i) for i in indices))
    return await _admit(ctx, [c for batch in batches for c in batch])


async def _relate(ctx: Context, parents: list[dict], wanted: dict[str, list[str]]) -> int:
    settings = ctx.spec.personas

    async def one(parent: dict) -> list[Candidate]:
        try:
            found = await persona_relater.relate(
                ctx, parent["id"], parent["persona"], settings.relate_per_persona, wanted
            )
        except LLMFailure as exc:
            ctx.events.emit("persona_relating_failed", persona_id=parent["id"], error=str(exc))
            return []
        return [
            Candidate(
                {
                    "id": short_id("p", parent["id"], i),
                    "persona": persona,
                    "depth": parent["depth"] + 1,
                    "source_text_id": parent["source_text_id"],
                    "relation": relation,
                    "parent_id": parent["id"],
                    **({"traits": labels} if labels else {}),
                },
                parent["persona"],
                f"its parent persona {parent['id']}",
            )
            for i, (relation, persona, labels) in enumerate(found)
        ]

    batches = await asyncio.gather(*(one(p) for p in parents))
    return await _admit(ctx, [c for batch in batches for c in batch])


def make_persona_gate(templates: dict[str, PromptTemplate], embedder: Embedder) -> PersonaGate:
    """The run's gate: the example personas of the miner's and relater's templates in use (the
    spec may override them), embedded once, when the first persona is checked."""
    examples = prompt_examples(templates[role] for role in EXAMPLE_ROLES)
    return PersonaGate(examples, lambda: embedder.embed(examples) if examples else [])


def persona_gate(ctx: Context) -> PersonaGate:
    if ctx.persona_gate is None:
        raise RuntimeError("the context has no persona gate: graphs.wiring.wire(ctx) first")
    return ctx.persona_gate


async def _admit(ctx: Context, candidates: list[Candidate]) -> int:
    """Add the candidates that pass the gate and are not near-duplicates of the pool, in
    order; record the others with their reason."""
    settings = ctx.spec.personas
    fresh = [c for c in candidates if not ctx.store.persona_seen(c.row["id"])]
    passed = await _gated(ctx, fresh) if settings.check != "off" else await _embedded(ctx, fresh)
    if settings.check == "llm" and passed:
        passed = await _checked(ctx, passed)
    added = 0
    for candidate, vector in passed:
        persona = candidate.row
        neighbour = await novelty.nearest(ctx, PERSONAS, vector, exclude=persona["id"])
        if novelty.is_duplicate(neighbour, settings.novelty_threshold):
            similarity = round(neighbour.similarity, 4)
            finding = GateFinding(
                PersonaRejectReason.NEAR_DUPLICATE,
                f"too similar ({similarity:.2f}) to persona {neighbour.id}",
            )
            _turn_away(ctx, persona, finding, neighbour_id=neighbour.id, similarity=similarity)
            continue
        ctx.index.add(PERSONAS, persona["id"], vector, persona["persona"])
        ctx.store.add_persona(persona)
        ctx.events.emit("persona_added", persona_id=persona["id"], depth=persona["depth"])
        added += 1
    return added


async def _embedded(
    ctx: Context, candidates: list[Candidate]
) -> list[tuple[Candidate, list[float]]]:
    """``personas.check: off``: every candidate, with its embedding."""
    if not candidates:
        return []
    vectors = await asyncio.to_thread(
        embed_all, ctx.embedder, [c.row["persona"] for c in candidates]
    )
    return [(c, list(v)) for c, v in zip(candidates, vectors, strict=True)]


async def _gated(ctx: Context, candidates: list[Candidate]) -> list[tuple[Candidate, list[float]]]:
    """The candidates the gate lets through, each with its embedding; the rest are turned
    away. A description that fails on its shape alone is not embedded."""
    shaped = []
    for candidate in candidates:
        if finding := shape_finding(candidate.row["persona"]):
            _turn_away(ctx, candidate.row, finding)
        else:
            shaped.append(candidate)
    if not shaped:
        return []
    gate = persona_gate(ctx)
    await asyncio.to_thread(lambda: gate.vectors)  # embeds the examples, the first time
    sources = list(dict.fromkeys(c.source for c in shaped if c.source))  # pool rows: none
    vectors = await asyncio.to_thread(
        embed_all, ctx.embedder, [c.row["persona"] for c in shaped] + sources
    )
    by_source = dict(zip(sources, vectors[len(shaped) :], strict=True))
    passed = []
    for candidate, vector in zip(shaped, vectors[: len(shaped)], strict=True):
        if finding := gate.similarity_finding(
            candidate.row["persona"],
            vector,
            candidate.source,
            by_source.get(candidate.source),
            candidate.source_name,
        ):
            _turn_away(ctx, candidate.row, finding)
        else:
            passed.append((candidate, list(vector)))
    return passed


async def _checked(
    ctx: Context, passed: list[tuple[Candidate, list[float]]]
) -> list[tuple[Candidate, list[float]]]:
    """``personas.check: llm``: the persona-checker's verdicts, one call for the whole step.
    A failed call keeps them all (they passed the rules) and says so in an event."""
    try:
        verdicts = await persona_checker.check(ctx, [c.row["persona"] for c, _ in passed])
    except LLMFailure as exc:
        ctx.events.emit("persona_check_failed", personas=len(passed), error=str(exc))
        return passed
    kept = []
    for (candidate, vector), plausible in zip(passed, verdicts, strict=True):
        if plausible:
            kept.append((candidate, vector))
        else:
            finding = GateFinding(
                PersonaRejectReason.IMPLAUSIBLE,
                "the persona-checker found no plausible, specific person in it",
            )
            _turn_away(ctx, candidate.row, finding)
    return kept


def _turn_away(ctx: Context, persona: dict[str, Any], finding: GateFinding, **extra: Any) -> None:
    """Record a persona kept out of the pool in rejected_personas.jsonl, and say so."""
    if ctx.store.reject_persona(
        {**persona, "reason": str(finding.reason), "details": finding.details, **extra}
    ):
        ctx.events.emit(
            "persona_rejected",
            persona_id=persona["id"],
            depth=persona["depth"],
            reason=str(finding.reason),
            details=finding.details,
            **extra,
        )
