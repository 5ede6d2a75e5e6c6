"""The ``mine_personas`` node: grow the persona pool only as far as the next batch needs.

The spec's ready-made personas (``personas.pool``, read and sampled by ``personaloom.pool``)
are admitted first, all at once, so the planner sees every label they carry. Then related
personas (Persona-to-Persona) of pool members, then new corpus texts (Text-to-Persona).
Every new persona is checked against the pool in Chroma and dropped when it is a
near-duplicate. Ids are deterministic, so a node re-run after a crash adds nothing twice.
"""

from __future__ import annotations

import asyncio
import math

from langgraph.runtime import Runtime
from personaloom.agents import novelty, persona_miner, persona_relater
from personaloom.graphs.context import Context
from personaloom.graphs.state import GenerationState

from personaloom.embeddings import embed_all
from personaloom.ids import short_id
from personaloom.llm import BudgetExhausted, LLMFailure
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
                added += await _admit(ctx, ctx.pool[pool_cursor:])
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


async def _mine(ctx: Context, indices: list[int], wanted: dict[str, list[str]]) -> int:
    settings = ctx.spec.personas

    async def one(index: int) -> list[dict]:
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
            {
                "id": short_id("p", text_id, relation, i),
                "persona": persona,
                "depth": 0,
                "source_text_id": text_id,
                "relation": relation,
                "parent_id": None,
                **({"traits": labels} if labels else {}),
            }
            for i, (persona, labels) in enumerate(found)
        ]

    batches = await asyncio.gather(*(one(i) for i in indices))
    return await _admit(ctx, [p for batch in batches for p in batch])


async def _relate(ctx: Context, parents: list[dict], wanted: dict[str, list[str]]) -> int:
    settings = ctx.spec.personas

    async def one(parent: dict) -> list[dict]:
        try:
            found = await persona_relater.relate(
                ctx, parent["id"], parent["persona"], settings.relate_per_persona, wanted
            )
        except LLMFailure as exc:
            ctx.events.emit("persona_relating_failed", persona_id=parent["id"], error=str(exc))
            return []
        return [
            {
                "id": short_id("p", parent["id"], i),
                "persona": persona,
                "depth": parent["depth"] + 1,
                "source_text_id": parent["source_text_id"],
                "relation": relation,
                "parent_id": parent["id"],
                **({"traits": labels} if labels else {}),
            }
            for i, (relation, persona, labels) in enumerate(found)
        ]

    batches = await asyncio.gather(*(one(p) for p in parents))
    return await _admit(ctx, [p for batch in batches for p in batch])


async def _admit(ctx: Context, candidates: list[dict]) -> int:
    """Add the candidates that are new and not near-duplicates of the pool, in order."""
    threshold = ctx.spec.personas.novelty_threshold
    fresh = [c for c in candidates if c["id"] not in ctx.store.persona_by_id]
    if not fresh:
        return 0
    vectors = await asyncio.to_thread(embed_all, ctx.embedder, [c["persona"] for c in fresh])
    added = 0
    for persona, vector in zip(fresh, vectors, strict=True):
        neighbour = await novelty.nearest(ctx, PERSONAS, vector, exclude=persona["id"])
        if novelty.is_duplicate(neighbour, threshold):
            ctx.events.emit(
                "persona_duplicate",
                persona_id=persona["id"],
                neighbour_id=neighbour.id,
                similarity=round(neighbour.similarity, 4),
            )
            continue
        ctx.index.add(PERSONAS, persona["id"], vector, persona["persona"])
        ctx.store.add_persona(persona)
        ctx.events.emit("persona_added", persona_id=persona["id"], depth=persona["depth"])
        added += 1
    return added
