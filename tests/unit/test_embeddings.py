"""The endpoint embedder on the event loop (``aembed``) behaves as ``embed`` does: the same
vectors, retries that honour Retry-After, and a failure that names the embeddings endpoint."""

from __future__ import annotations

import asyncio
import tempfile

import pytest

from personaloom.embeddings import CachedEmbedder, OpenAIEmbedder, aclose_embedder, embed_async
from personaloom.llm.cache import ReplyCache
from personaloom.llm.client import EndpointError
from personaloom.testing.scripted import ScriptedEndpoint

TEXTS = ["a fox in the snow", "a ship at sea"]


def _embedder(endpoint: ScriptedEndpoint, max_retries: int = 3) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        "scripted", base_url=endpoint.base_url, api_key=None, max_retries=max_retries
    )


def _aembed(embedder: OpenAIEmbedder | CachedEmbedder, texts: list[str]) -> list[list[float]]:
    """``aembed`` in an event loop of its own, closing the HTTP client it opened there."""

    async def embed() -> list[list[float]]:
        try:
            return await embed_async(embedder, texts)
        finally:
            await aclose_embedder(embedder)

    return asyncio.run(embed())


def _embeddings_requests(endpoint: ScriptedEndpoint) -> int:
    return sum(r["path"].endswith("/embeddings") for r in list(endpoint.requests))


def test_aembed_gives_what_embed_gives() -> None:
    with ScriptedEndpoint() as endpoint:
        embedder = _embedder(endpoint)
        assert _aembed(embedder, TEXTS) == embedder.embed(TEXTS)
        assert _aembed(embedder, TEXTS) == embedder.embed(TEXTS)  # in a second event loop too


def test_aembed_retries_a_rate_limit_then_answers() -> None:
    with ScriptedEndpoint() as endpoint:
        endpoint.inject("status", status=429, retry_after=0.1, times=2, embeddings=True)
        embedder = _embedder(endpoint)
        vectors = _aembed(embedder, TEXTS)
        assert len(vectors) == 2 and _embeddings_requests(endpoint) == 3


def test_aembed_that_keeps_failing_names_the_embeddings_endpoint() -> None:
    with ScriptedEndpoint() as endpoint:
        endpoint.inject("status", status=503, retry_after=0, times=10, embeddings=True)
        embedder = _embedder(endpoint, max_retries=2)
        with pytest.raises(EndpointError) as failure:
            _aembed(embedder, TEXTS)
        assert "the embeddings endpoint http://127.0.0.1" in str(failure.value)
        assert "failed after 3 attempts" in str(failure.value)
        assert _embeddings_requests(endpoint) == 3


def test_cached_aembed_asks_only_for_what_is_not_cached() -> None:
    with ScriptedEndpoint() as endpoint, tempfile.TemporaryDirectory() as folder:
        cache = ReplyCache(folder)
        embedder = CachedEmbedder(_embedder(endpoint), cache)
        first = embedder.embed(TEXTS[:1])
        both = _aembed(embedder, TEXTS)
        assert both[0] == first[0] and _embeddings_requests(endpoint) == 2
        assert _aembed(embedder, TEXTS) == both and _embeddings_requests(endpoint) == 2
        cache.close()
