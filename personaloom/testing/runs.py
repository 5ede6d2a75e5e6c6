"""Checks of a finished run that many tests make: complete, each sample once, the report
equal to the dataset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from personaloom.store import DATASET, REJECTED, REPORT_JSON, read_jsonl


def check_complete(run_dir: Path) -> list[dict[str, Any]]:
    """Complete, every id once and never also rejected, the report's counts equal to the
    dataset's and every target met; returns the samples."""
    samples = read_jsonl(run_dir / DATASET)
    ids = [s["id"] for s in samples]
    assert len(ids) == len(set(ids)), "a sample twice"
    assert not {r["id"] for r in read_jsonl(run_dir / REJECTED)} & set(ids)
    report = json.loads((run_dir / REPORT_JSON).read_text())
    assert report["status"] == "complete" and report["accepted"] == len(samples)
    counts = Counter((t, v) for s in samples for t, v in s["traits"].items())
    for trait, cells in report["coverage"].items():
        for value, cell in cells.items():
            assert cell["accepted"] == counts[(trait, value)] >= cell["target"]
    return samples
