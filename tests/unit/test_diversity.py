"""Diversity measures: hand-computed values, the dual Vendi form, edge cases, and the ordering a
user relies on (a repetitive run scores worse than a varied one on every measure)."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

from personaloom import diversity as d


def test_tokens_are_lowercase_words_with_inner_apostrophes() -> None:
    assert d.tokenize("Once upon a time, Tom’s well-known cat didn't   nap!") == [
        "once", "upon", "a", "time", "tom's", "well", "known", "cat", "didn't", "nap",
    ]  # fmt: skip
    assert d.tokenize("") == []
    assert d.tokenize("... -- !!") == []


def test_distinct_n_by_hand() -> None:
    tokens = [d.tokenize("the cat the cat"), d.tokenize("the dog")]
    # unigrams: the cat the cat the dog -> 3 unique of 6
    assert d.distinct_n(tokens, 1) == pytest.approx(3 / 6)
    # bigrams: (the cat) (cat the) (the cat) | (the dog) -> 3 unique of 4; none spans samples
    assert d.distinct_n(tokens, 2) == pytest.approx(3 / 4)
    # trigrams: (the cat the) (cat the cat) -> 2 of 2; "the dog" has none
    assert d.distinct_n(tokens, 3) == pytest.approx(1.0)
    assert d.distinct_n(tokens, 5) is None
    assert d.distinct_n(tokens, 9) is None  # longer than the whole corpus
    assert d.distinct_n([[], ["a", "b"], []], 2) == 1.0
    assert d.distinct_n([], 1) is None


def test_distinct_n_large_vocabulary_path_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    tokens = [[f"w{i}" for i in rng.integers(0, 40, size=rng.integers(0, 30))] for _ in range(50)]
    packed = d.distinct_ns(tokens, (1, 2, 3, 4))
    monkeypatch.setattr(d, "_CODE_LIMIT", 0)  # as if the vocabulary were huge
    assert d.distinct_ns(tokens, (1, 2, 3, 4)) == packed
    for n in (1, 2, 3, 4):
        grams = [tuple(t[i : i + n]) for t in tokens for i in range(len(t) - n + 1)]
        assert packed[n] == pytest.approx(len(set(grams)) / len(grams))


def test_openings_are_normalised_and_ranked() -> None:
    texts = [
        "Once upon a time, a fox.",
        "ONCE, upon... a midnight dreary",
        "Once upon a hill",
        "Tom ran.",
        "Tom ran",
        "Zed",
        "",
    ]
    assert d.opening(texts[1]) == "once upon a"
    assert d.opening("Tom ran.") == "tom ran"  # a short text opens with what it has
    assert d.opening("  ,; ") is None
    assert d.top_openings(texts) == [("once upon a", 3), ("tom ran", 2), ("zed", 1)]
    assert d.top_openings(["b x y", "a x y"], k=1) == [("a x y", 1)]  # ties: alphabetical

    report = d.measure(texts)
    assert report["top_opening"] == "once upon a"
    assert report["top_opening_share"] == round(3 / 7, 4)  # share of all samples
    assert report["top_openings"][:2] == [
        {"opening": "once upon a", "count": 3},
        {"opening": "tom ran", "count": 2},
    ]


def test_compression_ratio_is_raw_over_zlib_level_9() -> None:
    texts = ["abc abc abc", "déjà vu"]
    raw = "abc abc abc\ndéjà vu".encode()
    assert d.compression_ratio(texts) == pytest.approx(len(raw) / len(zlib.compress(raw, 9)))
    assert d.compression_ratio([]) is None
    assert d.compression_ratio(["", ""]) is None  # a lone separator is not text


def _naive_mean_cosine_distance(x: np.ndarray) -> float:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    n = len(x)
    return float(1 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def test_mean_cosine_distance_by_hand_and_against_all_pairs() -> None:
    # pairs: (e1, e1) 0, (e1, e2) 1, (e1, e2) 1 -> mean 2/3; lengths do not matter
    assert d.mean_cosine_distance([[1, 0], [3, 0], [0, 2]]) == pytest.approx(2 / 3)
    assert d.mean_cosine_distance([[1, 0], [-1, 0]]) == pytest.approx(2.0)
    x = np.random.default_rng(1).standard_normal((300, 24))
    assert d.mean_cosine_distance(x) == pytest.approx(_naive_mean_cosine_distance(x), abs=1e-12)
    assert d.mean_cosine_distance(x.astype(np.float32)) == pytest.approx(
        _naive_mean_cosine_distance(x), abs=1e-6
    )


@pytest.mark.parametrize(("n", "dims"), [(50, 8), (40, 200), (257, 30)])
def test_vendi_dual_form_equals_the_naive_n_by_n_form(n: int, dims: int) -> None:
    x = np.random.default_rng(n).standard_normal((n, dims)) + 0.5  # correlated, not isotropic
    naive = d.vendi_score_naive(x)
    assert naive is not None and 1 < naive < n
    assert d.vendi_score(x) == pytest.approx(naive, rel=1e-9)
    assert d.vendi_score(x.astype(np.float32)) == pytest.approx(naive, rel=1e-4)


def test_vendi_dual_form_spans_several_chunks() -> None:
    x = np.random.default_rng(7).standard_normal((2 * d._CHUNK_ROWS + 5, 6))
    naive_gram = (x / np.linalg.norm(x, axis=1, keepdims=True)).T @ (
        x / np.linalg.norm(x, axis=1, keepdims=True)
    )
    gram, _ = d._gram_and_sum(x)
    np.testing.assert_allclose(gram, naive_gram, rtol=1e-10, atol=1e-8)


def test_vendi_of_identical_and_of_orthogonal_vectors() -> None:
    assert d.vendi_score(np.tile([0.3, -1.2, 2.0], (25, 1))) == pytest.approx(1.0)
    assert d.mean_cosine_distance(np.tile([0.3, -1.2, 2.0], (25, 1))) == 0.0
    assert d.vendi_score(np.eye(12) * 5) == pytest.approx(12.0)
    # two groups of identical vectors, orthogonal to each other: 2 effective samples
    assert d.vendi_score([[1, 0]] * 3 + [[0, 4]] * 3) == pytest.approx(2.0)


def test_unusable_embedding_rows_are_left_out() -> None:
    rows = [[1.0, 0.0], [0.0, 0.0], [float("nan"), 1.0], [0.0, 1.0]]
    assert d.embedding_dispersion(rows) == {
        "embeddings": 2,
        "mean_cosine_distance": pytest.approx(1.0),
        "vendi_score": pytest.approx(2.0),
    }
    with pytest.raises(ValueError, match="2-D"):
        d.vendi_score(np.ones((2, 2, 2)))


def test_persona_entropy_in_nats_and_normalised() -> None:
    usage = d.persona_usage(["a", "a", "b", "c", None])
    p = np.array([2, 1, 1]) / 4
    assert usage["personas_used"] == 3
    assert usage["persona_entropy"] == pytest.approx(-(p * np.log(p)).sum())
    assert usage["persona_entropy_normalised"] == pytest.approx(
        usage["persona_entropy"] / math.log(3)
    )
    # against the whole pool, the same spread is less even
    pooled = d.persona_usage(["a", "a", "b", "c"], persona_pool=9)
    assert pooled["persona_entropy_normalised"] == pytest.approx(
        usage["persona_entropy"] / math.log(9)
    )
    assert d.persona_usage(["a", "b"] * 5)["persona_entropy_normalised"] == pytest.approx(1.0)
    assert d.persona_usage(["solo"] * 4) == {
        "personas_used": 1,
        "persona_entropy": 0.0,
        "persona_entropy_normalised": None,
    }
    assert d.persona_usage(["solo"] * 4, persona_pool=4)["persona_entropy_normalised"] == 0.0
    assert d.persona_usage([]) == {
        "personas_used": 0,
        "persona_entropy": None,
        "persona_entropy_normalised": None,
    }


def test_vocabulary_coverage_per_part() -> None:
    coverage = d.vocabulary_coverage(
        {"noun": {"cat", "dog"}, "verb": ["run", "run"]},
        {"noun": 4, "verb": 5, "adjective": 3},
    )
    assert coverage == {
        "adjective": {"used": 0, "size": 3, "share": 0.0},
        "noun": {"used": 2, "size": 4, "share": 0.5},
        "verb": {"used": 1, "size": 5, "share": 0.2},
    }
    assert d.vocabulary_coverage({"noun": {"cat"}}, {}) == {
        "noun": {"used": 1, "size": None, "share": None}
    }


MEASURE_KEYS = {
    "samples",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "top_opening",
    "top_opening_share",
    "top_openings",
    "compression_ratio",
    "embeddings",
    "mean_cosine_distance",
    "vendi_score",
    "personas_used",
    "persona_entropy",
    "persona_entropy_normalised",
    "vocabulary_coverage",
}


@pytest.mark.parametrize(
    ("texts", "vectors"),
    [([], None), ([], np.zeros((0, 384))), ([""], None), (["", ""], [[0.0, 0.0], [0.0, 0.0]])],
)
def test_empty_runs_give_none_not_errors(texts: list[str], vectors: object) -> None:
    report = d.measure(texts, vectors=vectors, persona_ids=[None] * len(texts))
    assert set(report) == MEASURE_KEYS
    for key in MEASURE_KEYS - {"samples", "embeddings", "personas_used", "top_openings"}:
        assert report[key] in (None, {}), key
    assert report["samples"] == len(texts)
    assert report["embeddings"] == report["personas_used"] == 0
    assert report["top_openings"] == []
    json.dumps(report, allow_nan=False)


def test_a_single_sample() -> None:
    report = d.measure(
        ["A cat sat."],
        vectors=[[0.1, 0.2, 0.3]],
        persona_ids=["p1"],
        vocabulary_used={"noun": {"cat"}},
        vocabulary_size={"noun": 2},
    )
    assert report["distinct_1"] == report["distinct_2"] == report["distinct_3"] == 1.0
    assert report["top_opening"] == "a cat sat"
    assert report["top_opening_share"] == 1.0
    assert report["embeddings"] == 1
    assert report["mean_cosine_distance"] is None  # no pair
    assert report["vendi_score"] == 1.0
    assert report["personas_used"] == 1
    assert report["persona_entropy"] == 0.0
    assert report["persona_entropy_normalised"] is None
    assert report["vocabulary_coverage"] == {"noun": {"used": 1, "size": 2, "share": 0.5}}
    json.dumps(report, allow_nan=False)


VARIED = [
    "Mira fixed the lighthouse lamp before the storm reached the harbour.",
    "A retired chemist taught her grandson why bread rises in a warm kitchen.",
    "Under the bridge, two rival drummers discovered they shared a rhythm.",
    "The night nurse counted owls from the ward window and named each one.",
    "Farmers argued about rain until a child drew clouds on the barn door.",
    "Jonas traded his broken kite for a map of the old railway tunnels.",
    "Every Tuesday the baker left warm rolls for the silent chess players.",
    "In the desert school, students measured shadows to guess the hour.",
]
REPETITIVE = [f"Once upon a time there was a little cat who liked to play. {n}" for n in range(8)]


def _bag_of_words_vectors(texts: list[str], dims: int = 64) -> np.ndarray:
    """A stand-in for an embedding model: similar texts get similar vectors."""
    out = np.zeros((len(texts), dims))
    for row, text in enumerate(texts):
        for token in d.tokenize(text):
            out[row, zlib.crc32(token.encode()) % dims] += 1
    return out


def _measure(texts: list[str], personas: list[str], used: dict[str, set[str]]) -> dict:
    return d.measure(
        texts,
        vectors=_bag_of_words_vectors(texts),
        persona_ids=personas,
        persona_pool=8,
        vocabulary_used=used,
        vocabulary_size={"noun": 10, "verb": 10},
    )


def test_a_repetitive_corpus_scores_worse_on_every_measure() -> None:
    varied = _measure(
        VARIED, [f"p{i}" for i in range(8)], {"noun": {"kite", "lamp", "owl"}, "verb": {"fix"}}
    )
    repetitive = _measure(REPETITIVE, ["p0"] * 7 + ["p1"], {"noun": {"cat"}, "verb": set()})
    higher_is_more_diverse = [
        "distinct_1",
        "distinct_2",
        "distinct_3",
        "mean_cosine_distance",
        "vendi_score",
        "personas_used",
        "persona_entropy",
        "persona_entropy_normalised",
    ]
    for key in higher_is_more_diverse:
        assert varied[key] > repetitive[key], key
    for key in ["top_opening_share", "compression_ratio"]:  # higher is more repetitive
        assert varied[key] < repetitive[key], key
    for part in ["noun", "verb"]:
        assert (
            varied["vocabulary_coverage"][part]["share"]
            > repetitive["vocabulary_coverage"][part]["share"]
        )
    assert repetitive["top_opening"] == "once upon a"
    assert repetitive["top_opening_share"] == 1.0
    assert varied["top_opening_share"] == pytest.approx(1 / 8, abs=1e-4)
    assert varied["vendi_score"] > 3 * repetitive["vendi_score"]


def test_measure_is_deterministic_and_json_ready() -> None:
    first = _measure(VARIED, ["a", "b"] * 4, {"noun": {"kite"}})
    assert first == _measure(VARIED, ["a", "b"] * 4, {"noun": {"kite"}})
    assert json.loads(json.dumps(first, allow_nan=False)) == first
