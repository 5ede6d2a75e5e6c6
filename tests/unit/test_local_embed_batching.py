"""Concurrent LocalEmbedder calls are combined into fewer encode calls, each caller getting
its own vectors back; errors reach every caller of the failed batch."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from personaloom.local.embed import _Encoder


class FakeModel:
    def __init__(self, fail: bool = False):
        self.batches: list[list[str]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def encode(self, texts, **kwargs):
        with self._lock:
            self.batches.append(list(texts))
        time.sleep(0.05)
        if self.fail:
            raise RuntimeError("boom")
        return np.array([[float(len(t)), float(t.count("x"))] for t in texts])


def test_concurrent_calls_are_combined() -> None:
    model = FakeModel()
    encoder = _Encoder(model)
    texts = ["x" * i for i in range(1, 13)]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda t: encoder.encode([t, t + "y"], 64), texts))
    for text, vectors in zip(texts, got, strict=True):
        assert vectors == [[len(text), len(text)], [len(text) + 1, len(text)]]
    assert len(model.batches) < len(texts)
    assert sorted(t for batch in model.batches for t in batch) == sorted(
        t for text in texts for t in (text, text + "y")
    )


def test_a_lone_call_is_encoded_at_once() -> None:
    model = FakeModel()
    assert _Encoder(model).encode(["abc"], 64) == [[3.0, 0.0]]
    assert model.batches == [["abc"]]


def test_errors_reach_every_caller() -> None:
    encoder = _Encoder(FakeModel(fail=True))
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(encoder.encode, [str(i)], 64) for i in range(4)]
    for future in futures:
        with pytest.raises(RuntimeError, match="boom"):
            future.result()
    assert encoder._busy is False
