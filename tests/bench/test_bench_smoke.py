"""Each benchmark runs at a tiny size (``--quick``) and writes its JSON: a broken script shows
up here, not on the day someone runs ``make bench``. No timing is asserted: benchmarks are
not tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = [
    "overhead",
    "concurrency",
    "novelty_scale",
    "cache_resume",
    "coverage_efficiency",
    "engines",
    "workers",
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_quick(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["benchmark"] == name and result["machine"]["cores"]
    assert done.stdout.strip(), "prints a table"


def test_persona_quality_runs_quick_before_and_after(tmp_path: Path) -> None:
    """Not in ``make bench`` (the embedded model is slow): its own smoke run, both sides on
    the scripted endpoint, the base exported from HEAD."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "persona_quality.py"), "--quick", "--base", "HEAD"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "persona_quality.json").read_text())
    for side in ("before", "after"):
        assert result[side]["accepted"] == 2 and result[side]["persona_calls"] >= 1
        assert result[side]["share_by_rejectable_persona"] == 0
    assert "persona calls per such persona" in done.stdout


def test_run_all_finds_every_benchmark() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCH))
    assert set(SCRIPTS) - {"engines", "workers"} <= set(run_all.scripts())
    assert "engines" not in run_all.scripts()  # make bench-engines
    assert "workers" not in run_all.scripts()  # make bench-workers
    assert "run_all" not in run_all.scripts()
    assert "persona_quality" not in run_all.scripts()  # make bench-personas


def test_compare_runs_a_revision_and_the_working_tree_side_by_side(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "compare.py"), "overhead", "--base", "HEAD", "--rounds", "1"]
        + ["--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "compare_overhead.json").read_text())
    assert result["figures"] and all(f["base"] and f["head"] for f in result["figures"])
    (base,), (head,) = result["runs"]["base"], result["runs"]["head"]
    # The base really ran the exported revision, the head the working tree.
    assert "personaloom-compare-" in base["machine"]["personaloom"]["imported_from"]
    assert head["machine"]["personaloom"]["imported_from"] == str(BENCH.parent / "personaloom")
    assert "head/base" in done.stdout


def test_run_all_skips_the_tools() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCH))
    assert "compare" not in run_all.scripts()
