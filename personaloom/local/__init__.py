"""Embedded defaults for when no endpoint is configured: a tiny local LLM and local embeddings.

Both need the optional ``personaloom[local]`` extra; importing this package does not load them.
"""

from personaloom.local.embed import LocalEmbedder, local_embeddings_available
from personaloom.local.server import (
    MODEL_ALIAS,
    TINY_MODEL_NOTICE,
    LocalModelServer,
    LocalModelUnavailable,
    gguf_path,
    serve_forever,
)

__all__ = [
    "MODEL_ALIAS",
    "TINY_MODEL_NOTICE",
    "LocalEmbedder",
    "LocalModelServer",
    "LocalModelUnavailable",
    "gguf_path",
    "local_embeddings_available",
    "serve_forever",
]
