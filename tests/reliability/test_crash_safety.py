"""SIGKILL at seeded random moments, resumes killed too, then a resume to the end: nothing
lost, nothing duplicated, the report equal to the dataset, Chroma equal to the accepted ids.

Twenty seeds, each a run of 12 samples at concurrency 3 (even seeds: `total: 12` with smaller
trait targets; odd seeds: trait targets alone, 6 per value) against a scripted endpoint slow
enough that kills land inside drafting, commits and resumes alike.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from personaloom.store import read_jsonl
from personaloom.testing.scripted import PersonaloomResponder, ScriptedEndpoint
from personaloom.vectors import SAMPLES, NoveltyIndex

SEEDS = range(20)
KILLS = 3  # per seed: the first run, then resumes, each killed at a random moment
TOTAL = 12
CONCURRENCY = 3


@pytest.fixture(scope="module")
def slow_endpoint():
    with ScriptedEndpoint(PersonaloomResponder(), latency=0.03) as server:
        yield server


@pytest.fixture
def endpoint(slow_endpoint: ScriptedEndpoint) -> ScriptedEndpoint:
    return slow_endpoint


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "personaloom.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def _kill_at(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` seconds; False when it had already ended."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


@pytest.mark.parametrize("seed", SEEDS)
def test_random_kills_lose_and_duplicate_nothing(make_spec, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    if seed % 2:
        sizes = {"traits": {"feature": {"values": ["dialogue", "moral"], "target": TOTAL // 2}}}
    else:
        sizes = {"traits": {"feature": {"values": ["dialogue", "moral"], "target": 4}}}
        sizes["total"] = TOTAL
    spec = make_spec(concurrency=CONCURRENCY, seed=seed, **sizes)
    run_dir = tmp_path / "run"
    args = ["run", str(spec), "--out", str(run_dir)]
    for _ in range(KILLS):
        # Start-up (imports, Chroma, the checkpointer) takes about 2 s of the window: early
        # kills land in the resume itself, later ones in drafting and commits.
        if not _kill_at(_start(*args), rng.uniform(0.5, 6.0)):
            break
        if not (run_dir / "run.json").exists():
            args = ["run", str(spec), "--out", str(run_dir)]  # killed before it made the run
        else:
            args = ["run", str(spec), "--resume", str(run_dir)]
    final = _start("run", str(spec), "--resume", str(run_dir))
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    _check_run(run_dir)


def _check_run(run_dir: Path) -> None:
    lines = (run_dir / "dataset.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines]  # every line parses
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
    # One trait (or `total`) decides the size, and a batch never asks for more than is missing.
    assert len(samples) == TOTAL, f"{len(samples)} accepted for a total of {TOTAL}"
    counts = Counter(s["traits"]["feature"] for s in samples)
    for value, cell in report["coverage"]["feature"].items():
        assert cell["accepted"] == counts[value] >= cell["target"]

    index = NoveltyIndex(run_dir / "chroma")
    try:
        assert index.ids(SAMPLES) == set(ids), "Chroma's ids differ from the accepted ids"
    finally:
        index.close()
