"""SIGKILL at seeded random moments, resumes killed too, then a resume to the end: nothing
lost, nothing duplicated, the report equal to the dataset, Chroma equal to the accepted ids.

Twenty seeds, each a run of 12 samples at concurrency 3 (even seeds: `total: 12` with smaller
trait targets; odd seeds: trait targets alone, 6 per value) against a scripted endpoint slow
enough that kills land inside drafting, commits and resumes alike.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from personaloom.runner import LatestCheckpoints, run
from personaloom.testing.scripted import PersonaloomResponder, ScriptedEndpoint

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
def test_random_kills_lose_and_duplicate_nothing(
    make_spec, tmp_path: Path, seed: int, check_run
) -> None:
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
    # Every kill can land before the run directory was made (a slow, loaded machine).
    made = (run_dir / "run.json").exists()
    final = _start("run", str(spec), *(("--resume",) if made else ("--out",)), str(run_dir))
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    check_run(run_dir, TOTAL)


def test_checkpoints_keep_only_the_latest(make_spec, tmp_path: Path, monkeypatch) -> None:
    """A long run's checkpoints.sqlite holds the newest checkpoints, not every step's."""
    monkeypatch.setattr(LatestCheckpoints, "PRUNE_EVERY", 4)  # a run of ~20 steps prunes
    spec = make_spec(traits={"feature": {"values": ["dialogue", "moral"], "target": 6}})
    run_dir = tmp_path / "run"
    assert run(spec, out=run_dir).status == "complete"
    with sqlite3.connect(run_dir / "checkpoints.sqlite") as db:
        saved = db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
        orphans = db.execute(
            "SELECT COUNT(*) FROM writes WHERE checkpoint_id NOT IN "
            "(SELECT checkpoint_id FROM checkpoints)"
        ).fetchone()[0]
    steps = run(spec, resume=run_dir).status  # the kept checkpoint still resumes
    assert steps == "complete"
    assert 1 <= saved <= LatestCheckpoints.KEEP + 4
    assert orphans == 0
