"""Embedders: the local MiniLM (``personaloom[local]``) or an OpenAI-compatible endpoint.

An embedder is anything with ``name`` and ``embed(texts) -> list[list[float]]``. One may also
have ``aembed``, the same on the event loop: the endpoint's does, so a draft's embedding request
does not cost a worker thread and a second HTTP stack; ``embed_async`` uses it when there is one
and runs ``embed`` in a worker thread when not (local MiniLM, whose encoding is the work).
``CachedEmbedder`` keeps vectors in the reply cache, so a rerun or a resume does not embed the
same text twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import openai
from pydantic import SecretStr

from personaloom.llm.cache import ReplyCache, digest, public_url
from personaloom.llm.client import RETRYABLE, EndpointError, MalformedReply, retry_delay
from personaloom.llm.http import async_client

if TYPE_CHECKING:
    from personaloom.endpoints import Overrides
    from personaloom.spec import Spec


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


async def embed_async(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    """``embedder.aembed(texts)`` if it has one, else ``embed`` in a worker thread."""
    aembed: Callable[[list[str]], Awaitable[list[list[float]]]] | None
    aembed = getattr(embedder, "aembed", None)
    if aembed is not None:
        return await aembed(texts)
    return await asyncio.to_thread(embedder.embed, texts)


async def aclose_embedder(embedder: Embedder) -> None:
    """Close what ``aembed`` opened (an HTTP client bound to this event loop), if anything."""
    aclose: Callable[[], Awaitable[None]] | None = getattr(embedder, "aclose", None)
    if aclose is not None:
        await aclose()


EMBED_BATCH = 256  # texts per embedding request when many are embedded at once


def embed_all(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    """Embed many texts (a persona pool, an avoid set) in requests of EMBED_BATCH: endpoints
    cap the inputs of one request (OpenAI at 2,048)."""
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBED_BATCH):
        vectors.extend(embedder.embed(texts[start : start + EMBED_BATCH]))
    return vectors


@contextmanager
def _json_replies() -> Iterator[None]:
    """A reply body that is not JSON is a malformed reply (retried), not a crash."""
    try:
        yield
    except json.JSONDecodeError as exc:
        raise MalformedReply(f"the reply body is not JSON: {exc}") from None


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Retried here, like chat calls (a server's Retry-After honoured, up to ``max_retries``);
    a request that still fails ends the run with an :class:`EndpointError` that names the
    embeddings endpoint, resumable once it answers again.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        api_key: SecretStr | None,
        timeout: float = 60.0,
        max_retries: int = 3,
    ):
        from langchain_openai import OpenAIEmbeddings

        self.name = f"openai:{model}"
        self._where = f"the embeddings endpoint {public_url(base_url) or 'of the OpenAI API'}"
        self._model = model
        self.max_retries = max_retries
        self._settings: dict[str, Any] = {
            "model": model,
            "openai_api_base": base_url,
            "openai_api_key": api_key or SecretStr("not-needed"),
            "request_timeout": timeout,
            "max_retries": 0,
            # Send text, not tiktoken ids: non-OpenAI servers expect strings.
            "check_embedding_ctx_length": False,
        }
        self._client = OpenAIEmbeddings(**self._settings)
        # aembed's: its own HTTP client, made on first use in the event loop it serves (an
        # httpx.AsyncClient belongs to one loop) and closed by aclose.
        self._async: tuple[OpenAIEmbeddings, httpx.AsyncClient] | None = None

    def embed(self, texts: list[str]) -> list[list[float]]:
        failures = 0
        while True:
            try:
                with _json_replies():
                    return self._client.embed_documents(texts)
            except RETRYABLE as exc:
                failures += 1
                time.sleep(self._delay(exc, failures))
            except openai.APIError as exc:
                raise self._failed(exc, "") from None

    async def aembed(self, texts: list[str]) -> list[list[float]]:
        if self._async is None:
            from langchain_openai import OpenAIEmbeddings

            timeout = self._settings["request_timeout"]
            http = async_client(max_connections=100, timeout=timeout)
            self._async = OpenAIEmbeddings(**self._settings, http_async_client=http), http
        client = self._async[0]
        failures = 0
        while True:
            try:
                with _json_replies():
                    return await client.aembed_documents(texts)
            except RETRYABLE as exc:
                failures += 1
                await asyncio.sleep(self._delay(exc, failures))
            except openai.APIError as exc:
                raise self._failed(exc, "") from None

    async def aclose(self) -> None:
        if self._async is not None:
            _, http = self._async
            self._async = None
            await http.aclose()

    def _delay(self, exc: Exception, failures: int) -> float:
        """How long to wait before attempt ``failures + 1``, or the error when none is left."""
        if failures > self.max_retries:
            raise self._failed(exc, f"after {failures} attempts") from None
        return retry_delay(exc, failures)

    def _failed(self, exc: Exception, attempts: str) -> EndpointError:
        return EndpointError(
            f"{self._where} (model {self._model!r}) failed{' ' + attempts if attempts else ''}: "
            f"{type(exc).__name__}: {exc}; check embeddings.base_url / embeddings.model, "
            "then resume the run with --resume"
        )


class CachedEmbedder:
    def __init__(self, inner: Embedder, cache: ReplyCache):
        self.inner = inner
        self.name = inner.name
        self.cache = cache

    def embed(self, texts: list[str]) -> list[list[float]]:
        keys, found, missing = self._lookup(texts)
        if missing:
            self._keep(keys, found, missing, self.inner.embed([texts[i] for i in missing]))
        return found

    async def aembed(self, texts: list[str]) -> list[list[float]]:
        keys, found, missing = self._lookup(texts)
        if missing:
            fresh = await embed_async(self.inner, [texts[i] for i in missing])
            self._keep(keys, found, missing, fresh)
        return found

    async def aclose(self) -> None:
        await aclose_embedder(self.inner)

    def _lookup(self, texts: list[str]) -> tuple[list[str], list[Any], list[int]]:
        """The texts' cache keys, their cached vectors (None: not cached), the missing ones."""
        keys = [digest({"embedder": self.name, "text": text}) for text in texts]
        found = [self.cache.get(key) for key in keys]
        return keys, found, [i for i, vector in enumerate(found) if vector is None]

    def _keep(
        self, keys: list[str], found: list[Any], missing: list[int], fresh: list[list[float]]
    ) -> None:
        for i, vector in zip(missing, fresh, strict=True):
            found[i] = vector
            self.cache.set(keys[i], vector)


def make_embedder(
    spec: Spec, overrides: Overrides, endpoints: dict, cache: ReplyCache | None
) -> Embedder:
    """The spec's embedder; ``personaloom mix`` uses it too, so that real records are compared
    with a run's samples in the space its novelty threshold was set for."""
    from personaloom.endpoints import DEFAULT_EMBEDDING_MODEL, ConfigError, embeddings_provider
    from personaloom.local.embed import LocalEmbedder, local_embeddings_available

    provider = embeddings_provider(spec, overrides, local_embeddings_available())
    if provider == "local":
        if not local_embeddings_available():
            raise ConfigError(
                "local embeddings need the local extra: pip install 'personaloom[local]' "
                "(or set embeddings.provider: openai)"
            )
        inner: Embedder = LocalEmbedder()
    else:
        default = endpoints["default"]
        key = default.api_key
        if spec.embeddings.api_key_env:
            if not os.environ.get(spec.embeddings.api_key_env):
                raise ConfigError(
                    f"embeddings.api_key_env names {spec.embeddings.api_key_env}, which is not set"
                )
            key = SecretStr(os.environ[spec.embeddings.api_key_env])
        elif spec.embeddings.base_url and spec.embeddings.base_url != default.base_url:
            key = None  # never send one host's key to another
        inner = OpenAIEmbedder(
            spec.embeddings.model or DEFAULT_EMBEDDING_MODEL,
            base_url=spec.embeddings.base_url or default.base_url,
            api_key=key,
            timeout=default.timeout,
            max_retries=default.max_retries,
        )
    return CachedEmbedder(inner, cache) if cache is not None else inner
