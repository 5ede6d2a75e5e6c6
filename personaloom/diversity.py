"""How diverse a run's accepted samples are: lexical, structural, semantic, persona, vocabulary.

Pure functions over texts, embedding rows and counts, so the report can show a user, for their
own run, the figures the brief compares (Vendi, distinct-2, top-opening share). numpy only, no
randomness: the same samples always give the same numbers.

Tokens everywhere are lowercase words: maximal runs of letters and digits (any script), joined
across inner apostrophes (``don't``, ``o'clock``; ``’`` counts as ``'``). Everything else
(punctuation, hyphens, whitespace) separates tokens, so "Once upon a time," gives
``once upon a time``.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_CHUNK_ROWS = 8192  # bounds the normalised copy of the embeddings to a few MB at a time
_CODE_LIMIT = 2**62  # n-gram codes up to here fit one int64

OPENING_WORDS = 3
TOP_OPENINGS = 5


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.replace("\u2019", "'").lower())


def distinct_ns(token_lists: Sequence[Sequence[str]], ns: Iterable[int]) -> dict[int, float | None]:
    """For each n: unique n-grams / all n-grams over the corpus; n-grams never span two samples.

    None when no sample has n tokens (the ratio is undefined, not zero). Tokens become integer
    ids and each n-gram one integer code, so 100k samples take numpy sorts, not Python sets
    (sorts, not ``np.unique``, which is hash-based and far slower on numpy 2.4 here).
    """
    ids: dict[str, int] = {}
    flat = np.fromiter(
        (ids.setdefault(token, len(ids)) for tokens in token_lists for token in tokens),
        dtype=np.int64,
    )
    lengths = np.fromiter((len(tokens) for tokens in token_lists), dtype=np.int64)
    owner = np.repeat(np.arange(lengths.size), lengths)
    result: dict[int, float | None] = {}
    for n in ns:
        if flat.size < n:
            result[n] = None
            continue
        starts = np.flatnonzero(owner[: flat.size - n + 1] == owner[n - 1 :])
        if starts.size == 0:
            result[n] = None
            continue
        columns = [flat[starts + offset] for offset in range(n)]
        if len(ids) ** n < _CODE_LIMIT:
            codes = columns[0]
            for column in columns[1:]:
                codes = codes * len(ids) + column
            codes = np.sort(codes)
            unique = 1 + int(np.count_nonzero(codes[1:] != codes[:-1]))
        else:  # a vocabulary too large for one int64 code per n-gram
            grams = np.stack(columns, axis=1)[np.lexsort(columns[::-1])]
            unique = 1 + int(np.count_nonzero((grams[1:] != grams[:-1]).any(axis=1)))
        result[n] = unique / starts.size
    return result


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float | None:
    return distinct_ns(token_lists, [n])[n]


def _opening(tokens: Sequence[str], words: int) -> str | None:
    return " ".join(tokens[:words]) or None


def opening(text: str, words: int = OPENING_WORDS) -> str | None:
    """The first ``words`` tokens joined by spaces (fewer if the text is shorter)."""
    return _opening(tokenize(text), words)


def _rank_openings(
    token_lists: Iterable[Sequence[str]], k: int, words: int
) -> list[tuple[str, int]]:
    counts = Counter(o for o in (_opening(t, words) for t in token_lists) if o is not None)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]


def top_openings(
    texts: Sequence[str], k: int = TOP_OPENINGS, words: int = OPENING_WORDS
) -> list[tuple[str, int]]:
    """Most common openings, ties in alphabetical order so the list is stable across runs."""
    return _rank_openings((tokenize(text) for text in texts), k, words)


def compression_ratio(texts: Sequence[str]) -> float | None:
    """UTF-8 bytes of the newline-joined texts / bytes of their zlib (level 9) compression.

    Higher means more repetitive: zlib finds repeated phrases across samples. zlib looks back
    32 KB only, so on a large corpus this measures repetition among neighbouring samples in
    the order given (dataset order). Short corpora can score below 1 because of zlib's fixed
    overhead. None when there is no text at all.
    """
    if not any(texts):
        return None
    raw = "\n".join(texts).encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 9))


def usable_rows(vectors: Any) -> np.ndarray:
    """The rows with a finite, non-zero norm, as a 2-D float array (not yet normalised).

    A zero or NaN embedding has no direction, so it cannot take part in a cosine measure.
    float32 input stays float32 (half the memory of a 100k-row copy); anything else is float64.
    """
    array = np.asarray(vectors if vectors is not None else [])
    if array.size == 0:
        return np.zeros((0, array.shape[-1] if array.ndim == 2 else 0))
    if array.dtype != np.float32:
        array = array.astype(np.float64, copy=False)
    if array.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (samples x dims), got {array.shape}")
    norms = np.linalg.norm(array, axis=1)
    keep = np.isfinite(norms) & (norms > 0)
    return array if keep.all() else array[keep]


def _gram_and_sum(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σ x̂ x̂ᵀ (d×d) and Σ x̂ over the L2-normalised rows, in float64, one chunk at a time."""
    d = rows.shape[1]
    gram = np.zeros((d, d))
    total = np.zeros(d)
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        chunk = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
        gram += chunk.T @ chunk
        total += chunk.sum(axis=0, dtype=np.float64)
    return gram, total


def mean_cosine_distance(vectors: Any) -> float | None:
    """Mean of 1 − cos(xᵢ, xⱼ) over all unordered pairs i < j, exact for any n in O(n·d).

    With unit rows, Σ_{i≠j} x̂ᵢ·x̂ⱼ = ‖Σ x̂ᵢ‖² − n, so no pair needs to be visited or sampled.
    None for fewer than two usable rows.
    """
    return embedding_dispersion(vectors)["mean_cosine_distance"]


def _exp_entropy(eigenvalues: np.ndarray) -> float:
    values = np.clip(eigenvalues, 0.0, None)  # round-off gives tiny negatives
    values = values[values > 0] / values.sum()
    return float(np.exp(-np.sum(values * np.log(values))))


def vendi_score(vectors: Any) -> float | None:
    """Vendi score (order 1) with cosine similarity: the effective number of distinct samples.

    Computed in its dual form: with X the n×d matrix of unit rows, K = X Xᵀ / n and
    C = Xᵀ X / n share their non-zero eigenvalues, and C is only d×d, so 100k samples cost one
    pass over X plus a d×d eigendecomposition. 1 for identical samples, n for orthogonal ones.
    None with no usable rows.
    """
    return embedding_dispersion(vectors)["vendi_score"]


def embedding_dispersion(vectors: Any) -> dict[str, Any]:
    """``embeddings`` (usable rows), ``mean_cosine_distance`` and ``vendi_score`` in one pass.

    Both measures come from the same sums over the unit rows, so the report pays for the
    n×d×d product once.
    """
    rows = usable_rows(vectors)
    n = rows.shape[0]
    if n == 0:
        return {"embeddings": 0, "mean_cosine_distance": None, "vendi_score": None}
    gram, total = _gram_and_sum(rows)
    distance = None
    if n > 1:
        mean_similarity = (float(total @ total) - n) / (n * (n - 1))
        distance = min(max(1.0 - mean_similarity, 0.0), 2.0)  # round-off at identical rows
    return {
        "embeddings": n,
        "mean_cosine_distance": distance,
        "vendi_score": _exp_entropy(np.linalg.eigvalsh(gram / n)),
    }


def vendi_score_naive(vectors: Any) -> float | None:
    """The n×n definition, kept as the reference the dual form is tested against."""
    rows = usable_rows(vectors).astype(np.float64)
    if rows.shape[0] == 0:
        return None
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return _exp_entropy(np.linalg.eigvalsh(rows @ rows.T / rows.shape[0]))


def shannon_entropy(counts: Iterable[int]) -> float | None:
    """Shannon entropy in nats (natural log) of the distribution the counts describe."""
    positive = np.array([c for c in counts if c > 0], dtype=np.float64)
    if positive.size == 0:
        return None
    p = positive / positive.sum()
    return float(-np.sum(p * np.log(p))) + 0.0  # + 0.0 turns -0.0 into 0.0


def persona_usage(
    persona_ids: Iterable[str | None], persona_pool: int | None = None
) -> dict[str, Any]:
    """How evenly accepted samples are spread over personas.

    ``persona_entropy`` is in nats. ``persona_entropy_normalised`` divides it by
    log(persona_pool) when the pool size is given (how much of the pool the run used evenly),
    else by log(personas_used) (evenness among the personas that wrote something); None when
    that log is 0, i.e. a single persona. Samples without a persona id are not counted.
    """
    counts = Counter(pid for pid in persona_ids if pid is not None)
    entropy = shannon_entropy(counts.values())
    spread = max(persona_pool or 0, len(counts))
    normalised = entropy / math.log(spread) if entropy is not None and spread > 1 else None
    return {
        "personas_used": len(counts),
        "persona_entropy": entropy,
        "persona_entropy_normalised": normalised,
    }


def vocabulary_coverage(
    used: Mapping[str, Collection[str]], sizes: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    """Per part of speech: distinct words used at least once, list size and their share.

    ``used`` should hold words from the list (the critic checks required words), so the share
    is at most 1. ``share`` is None for an empty or unknown list size.
    """
    coverage = {}
    for part in sorted(set(used) | set(sizes)):
        count = len(set(used.get(part, ())))
        size = sizes.get(part)
        coverage[part] = {
            "used": count,
            "size": size,
            "share": count / size if size else None,
        }
    return coverage


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def measure(
    texts: Sequence[str],
    *,
    vectors: Any = None,
    persona_ids: Iterable[str | None] = (),
    persona_pool: int | None = None,
    vocabulary_used: Mapping[str, Collection[str]] | None = None,
    vocabulary_size: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Every diversity measure of one run's accepted samples, as a JSON-ready dict.

    ``texts`` are the accepted samples; ``vectors`` their embeddings (n×d array-like, rows in
    any order; None or empty when the run has none); ``persona_ids`` the persona of each
    accepted sample; ``persona_pool`` the size of the persona pool; ``vocabulary_used`` maps a
    part of speech to the words of its list that accepted samples used, ``vocabulary_size`` to
    the list's length. Floats are rounded to 4 decimals; an undefined measure is None.
    """
    token_lists = [tokenize(text) for text in texts]
    openings = _rank_openings(token_lists, TOP_OPENINGS, OPENING_WORDS)
    distinct = distinct_ns(token_lists, (1, 2, 3))
    top, top_count = openings[0] if openings else (None, 0)
    dispersion = embedding_dispersion(vectors)
    personas = persona_usage(persona_ids, persona_pool)
    return {
        "samples": len(texts),
        "distinct_1": _rounded(distinct[1]),
        "distinct_2": _rounded(distinct[2]),
        "distinct_3": _rounded(distinct[3]),
        "top_opening": top,
        "top_opening_share": _rounded(top_count / len(texts)) if top is not None else None,
        "top_openings": [{"opening": text, "count": count} for text, count in openings],
        "compression_ratio": _rounded(compression_ratio(texts)),
        "embeddings": dispersion["embeddings"],
        "mean_cosine_distance": _rounded(dispersion["mean_cosine_distance"]),
        "vendi_score": _rounded(dispersion["vendi_score"]),
        "personas_used": personas["personas_used"],
        "persona_entropy": _rounded(personas["persona_entropy"]),
        "persona_entropy_normalised": _rounded(personas["persona_entropy_normalised"]),
        "vocabulary_coverage": {
            part: {**entry, "share": _rounded(entry["share"])}
            for part, entry in vocabulary_coverage(
                vocabulary_used or {}, vocabulary_size or {}
            ).items()
        },
    }
