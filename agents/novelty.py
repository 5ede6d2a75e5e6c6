"""novelty-checker: embeds personas and samples, finds the nearest accepted neighbour in
Chroma, and flags a near-duplicate (cosine similarity at or above the threshold); with a
novelty memory, also a draft too close to an earlier run's sample (``seen_before``)."""

from __future__ import annotations

import asyncio

from personaloom.vectors import Neighbour


async def embed(ctx, text: str) -> list[float]:
    (vector,) = await asyncio.to_thread(ctx.embedder.embed, [text])
    return list(vector)


async def nearest(
    ctx, collection: str, vector: list[float], *, exclude: str | None = None
) -> Neighbour | None:
    return await asyncio.to_thread(ctx.index.nearest, collection, vector, exclude=exclude)


async def seen_before(ctx, vector: list[float]) -> Neighbour | None:
    """An earlier run's sample in novelty memory at or above the threshold, if any."""
    return await asyncio.to_thread(ctx.memory.match, vector, ctx.novelty_threshold)


def is_duplicate(neighbour: Neighbour | None, threshold: float) -> bool:
    return neighbour is not None and neighbour.similarity >= threshold
