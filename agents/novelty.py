"""novelty-checker: embeds personas and samples, finds the nearest accepted neighbour in
Chroma, and flags a near-duplicate (cosine similarity at or above the threshold); with a
novelty memory, also a draft too close to an earlier run's sample (``seen_before``).

It also keeps samples away from the spec's avoid set (``novelty.avoid``: eval or test items):
a draft sharing a run of ``novelty.ngram`` words with an item, or as similar to one as a
near-duplicate, is contaminated. The writer is told why, never shown the item: an eval item
must not reach prompts, traces or the reply cache as something to write from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from typing_extensions import TypeIs

from personaloom.embeddings import embed_async
from personaloom.vectors import AVOID, Neighbour


async def embed(ctx, text: str) -> list[float]:
    (vector,) = await embed_async(ctx.embedder, [text])
    return list(vector)


async def nearest(
    ctx,
    collection: str,
    vector: list[float],
    *,
    exclude: str | None = None,
    hide: Container[str] = (),
) -> Neighbour | None:
    return await asyncio.to_thread(
        ctx.index.nearest, collection, vector, exclude=exclude, hide=hide
    )


async def seen_before(ctx, vector: list[float]) -> Neighbour | None:
    """An earlier run's sample in novelty memory at or above the threshold, if any."""
    return await asyncio.to_thread(ctx.memory.match, vector, ctx.novelty_threshold)


def is_duplicate(neighbour: Neighbour | None, threshold: float) -> TypeIs[Neighbour]:
    return neighbour is not None and neighbour.similarity >= threshold


@dataclass(frozen=True)
class Contamination:
    """Why a draft resembles an avoided item: a shared run of words, or its similarity."""

    item: str  # the item's id, file#row
    kind: str  # "ngram" or "similar"
    phrase: str | None = None
    similarity: float | None = None

    def feedback(self) -> str:
        if self.kind == "ngram":
            return (
                f'It repeats "{self.phrase}" word for word from a held-out evaluation item, '
                "which the dataset must not contain: write it in your own words, about "
                "something else."
            )
        return (
            f"It is too close ({self.similarity:.2f}) to a held-out evaluation item, which the "
            "dataset must not resemble: change the subject, the setting and the details."
        )

    def evidence(self) -> dict[str, Any]:
        found: dict[str, Any] = {"item": self.item, "match": self.kind}
        if self.phrase is not None:
            found["ngram"] = self.phrase
        if self.similarity is not None:
            found["similarity"] = round(self.similarity, 4)
        return found


def shared_words(ctx, texts: list[str]) -> Contamination | None:
    """A run of ``novelty.ngram`` words the draft's text fields share with an avoided item."""
    if ctx.avoid is None:
        return None
    overlap = ctx.avoid.overlap(texts)
    return Contamination(overlap.item.id, "ngram", phrase=overlap.phrase) if overlap else None


async def similar_avoided(ctx, vector: list[float], threshold: float) -> Contamination | None:
    """The avoided item the draft's embedding is at or above ``threshold`` to, if any."""
    if ctx.avoid is None or not len(ctx.avoid):
        return None
    neighbour = await nearest(ctx, AVOID, vector)
    if not is_duplicate(neighbour, threshold):
        return None
    return Contamination(neighbour.id, "similar", similarity=neighbour.similarity)
