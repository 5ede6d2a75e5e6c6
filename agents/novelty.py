"""novelty-checker: embeds personas and samples, finds the nearest accepted neighbour in
Chroma, and flags a near-duplicate (cosine similarity at or above the threshold)."""

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


def is_duplicate(neighbour: Neighbour | None, threshold: float) -> bool:
    return neighbour is not None and neighbour.similarity >= threshold
