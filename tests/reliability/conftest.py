"""The reliability suite's shared check of a finished run directory."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from personaloom.store import read_jsonl
from personaloom.vectors import SAMPLES, NoveltyIndex, discard_clients


def _check_run(run_dir: Path, size: int | None = None) -> list[dict]:
    """Every dataset line parses, ids are unique and never also rejected, every sample's
    persona is in the pool, the report equals the dataset, the run is complete with every
    target met (exactly ``size`` samples when given), and Chroma holds the accepted ids."""
    lines = (run_dir / "dataset.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    ids = [s["id"] for s in samples]
    assert len(ids) == len(set(ids)), "a sample twice"
    rejected = {r["id"] for r in read_jsonl(run_dir / "rejected.jsonl")}
    assert not rejected & set(ids), "a sample both accepted and rejected"
    personas = [p["id"] for p in read_jsonl(run_dir / "personas.jsonl")]
    assert len(personas) == len(set(personas))
    assert {s["persona"]["id"] for s in samples} <= set(personas), "a sample's persona lost"

    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "complete"
    assert report["accepted"] == len(samples)
    if size is not None:
        # One trait (or `total`) decides the size, and a batch never asks for more than is
        # missing: no overshoot at all.
        assert len(samples) == size, f"{len(samples)} accepted for a target of {size}"
    counts = Counter((t, v) for s in samples for t, v in s["traits"].items())
    for trait, cells in report["coverage"].items():
        for value, cell in cells.items():
            assert cell["accepted"] == counts[(trait, value)] >= cell["target"]

    # Chroma keeps one client per path per process: a run made in this process would leave
    # its client, which knows nothing of what another process rebuilt there since.
    discard_clients(run_dir / "chroma")
    index = NoveltyIndex(run_dir / "chroma")
    try:
        assert index.ids(SAMPLES) == set(ids), "Chroma's ids differ from the accepted ids"
    finally:
        index.close()
    return samples


@pytest.fixture
def check_run():
    return _check_run
