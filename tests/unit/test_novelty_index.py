"""NoveltyIndex buffers adds and writes them to Chroma in batches; lookups see them at once."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from personaloom import vectors
from personaloom.vectors import PERSONAS, SAMPLES, NoveltyIndex


def unit(*hot: int) -> list[float]:
    vector = [0.0] * 8
    for i in hot:
        vector[i] = 1.0
    norm = math.sqrt(len(hot))
    return [x / norm for x in vector]


def test_nearest_sees_buffered_and_stored_vectors(tmp_path: Path) -> None:
    index = NoveltyIndex(tmp_path / "chroma")
    assert index.nearest(SAMPLES, unit(0)) is None
    index.add(SAMPLES, "a", unit(0), "doc a")
    hit = index.nearest(SAMPLES, unit(0))
    assert hit is not None and (hit.id, hit.document) == ("a", "doc a")
    assert math.isclose(hit.similarity, 1.0, abs_tol=1e-6)
    assert index.nearest(SAMPLES, unit(0), exclude="a") is None
    index.flush()
    index.add(SAMPLES, "b", unit(0, 1), "doc b")  # buffered; "a" is in Chroma now
    assert index.nearest(SAMPLES, unit(0)).id == "a"
    assert index.nearest(SAMPLES, unit(1)).id == "b"
    assert index.nearest(SAMPLES, unit(0), exclude="a").id == "b"
    assert index.nearest(PERSONAS, unit(0)) is None


def test_a_buffered_add_replaces_the_stored_vector_of_its_id(tmp_path: Path) -> None:
    index = NoveltyIndex(tmp_path / "chroma")
    index.add(SAMPLES, "a", unit(0), "old")
    index.add(SAMPLES, "b", unit(2), "b")
    index.flush()
    index.add(SAMPLES, "a", unit(1), "new")
    hit = index.nearest(SAMPLES, unit(0))
    assert hit.id == "b" or hit.similarity < 0.5  # the stale "a" is not found
    assert index.nearest(SAMPLES, unit(1)).document == "new"


def test_full_buffer_is_written_and_readers_flush(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(vectors, "FLUSH_AT", 3)
    index = NoveltyIndex(tmp_path / "chroma")
    for i in range(3):
        index.add(SAMPLES, f"s{i}", unit(i), f"doc {i}")
    assert index._collections[SAMPLES].count() == 3
    index.add(SAMPLES, "s3", unit(3), "doc 3")
    assert index.ids(SAMPLES) == {"s0", "s1", "s2", "s3"}
    index.add(SAMPLES, "s4", unit(4), "doc 4")
    assert set(index.vectors(SAMPLES)) == {"s0", "s1", "s2", "s3", "s4"}


def test_buffered_adds_are_written_at_exit(tmp_path: Path) -> None:
    code = (
        "from pathlib import Path\n"
        "from personaloom.vectors import NoveltyIndex, SAMPLES\n"
        f"index = NoveltyIndex(Path({str(tmp_path / 'chroma')!r}))\n"
        "index.add(SAMPLES, 'a', [1.0, 0.0], 'doc a')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert NoveltyIndex(tmp_path / "chroma").ids(SAMPLES) == {"a"}


def test_reconcile_writes_more_than_one_chroma_batch(tmp_path: Path, monkeypatch) -> None:
    index = NoveltyIndex(tmp_path / "chroma")
    monkeypatch.setattr(index, "_batch", 2)
    wanted = {f"s{i}": f"doc {i}" for i in range(5)}
    added, removed = index.reconcile(SAMPLES, wanted, lambda texts: [unit(0)] * len(texts))
    assert (added, removed) == (5, 0)
    assert index.ids(SAMPLES) == set(wanted)
    assert index.reconcile(SAMPLES, {"s0": "doc 0"}, lambda texts: []) == (0, 4)
    assert index.ids(SAMPLES) == {"s0"}


def test_lookups_examine_ef_search_candidates_also_in_older_stores(tmp_path: Path) -> None:
    import chromadb
    from chromadb.config import Settings

    old = chromadb.PersistentClient(
        path=str(tmp_path / "old"), settings=Settings(anonymized_telemetry=False)
    )
    old.get_or_create_collection(SAMPLES, metadata={"hnsw:space": "cosine"})
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    for folder in ("old", "new"):
        index = NoveltyIndex(tmp_path / folder)
        for collection in index._collections.values():
            hnsw = collection.configuration["hnsw"]
            assert (hnsw["space"], hnsw["ef_search"]) == ("cosine", vectors.EF_SEARCH)


MARKER = b"sk-MARKER-in-freed-heap"


def _plant(segment: Path) -> None:
    """What chroma-core/chroma#7688 leaves: freed heap bytes past the stored elements."""
    for name in ("length.bin", "data_level0.bin"):
        with (segment / name).open("r+b") as file:
            file.seek(-len(MARKER) - 8, 2)
            file.write(MARKER)


def _segments(root: Path) -> list[Path]:
    return [header.parent for header in root.glob("*/header.bin")]


def _leaks(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.is_file() and MARKER in p.read_bytes()]


def test_unused_hnsw_capacity_holds_no_freed_memory(tmp_path: Path) -> None:
    root = tmp_path / "chroma"
    index = NoveltyIndex(root)
    index.add(SAMPLES, "a", unit(0), "doc a")
    index.flush()
    segments = _segments(root)
    assert segments, "Chroma wrote no HNSW segment"
    for segment in segments:
        _plant(segment)
    assert _leaks(root)
    index.add(SAMPLES, "b", unit(1), "doc b")
    index.flush()  # a write: the changed files are scrubbed after it
    assert _leaks(root) == []
    for segment in segments:
        _plant(segment)
    index.close()
    reopened = NoveltyIndex(root)  # a store left dirty by another process: scrubbed on open
    assert _leaks(root) == []
    assert reopened.nearest(SAMPLES, unit(1)).id == "b"
    assert reopened.nearest(SAMPLES, unit(0)).id == "a"


def test_a_segment_laid_out_otherwise_is_left_alone(tmp_path: Path) -> None:
    segment = tmp_path / "segment"
    segment.mkdir()
    (segment / "header.bin").write_bytes(b"\x01" * 10)  # too short to be hnswlib's header
    (segment / "length.bin").write_bytes(MARKER)
    (segment / "data_level0.bin").write_bytes(MARKER)
    assert vectors.scrub_segment(segment) is False
    assert (segment / "length.bin").read_bytes() == MARKER
