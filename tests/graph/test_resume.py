"""A run killed with SIGKILL mid-way resumes with nothing lost and nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from personaloom.store import read_jsonl
from personaloom.testing.scripted import PersonaloomResponder, ScriptedEndpoint


@pytest.fixture
def endpoint(responder: PersonaloomResponder):
    # Slow enough that the kill lands mid-run.
    with ScriptedEndpoint(responder, latency=0.05) as server:
        yield server


def cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "personaloom.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_killed_run_resumes_without_loss_or_duplicates(make_spec, tmp_path: Path, endpoint) -> None:
    traits = {
        "feature": {"values": ["dialogue", "moral"], "target": 5},
        "setting": {"values": ["forest", "sea"], "target": 5},
    }
    spec = make_spec(traits=traits, concurrency=3)
    run_dir = tmp_path / "run"
    env = {**os.environ}
    proc = cli("run", str(spec), "--out", str(run_dir), "--events", env=env)
    dataset = run_dir / "dataset.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(read_jsonl(dataset)) >= 4 or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"run ended before the kill: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_jsonl(dataset)
    assert 4 <= len(before) < 10

    resumed = cli("run", str(spec), "--resume", str(run_dir), "--events", env=env)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "run_started" and events[0]["resumed"] is True
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "complete"

    after = read_jsonl(dataset)
    ids = [s["id"] for s in after]
    assert len(ids) == len(set(ids)), "no sample twice"
    assert ids[: len(before)] == [s["id"] for s in before], "nothing lost"
    rejected = [r["id"] for r in read_jsonl(run_dir / "rejected.jsonl")]
    assert len(rejected) == len(set(rejected))
    assert not set(rejected) & set(ids)
    personas = [p["id"] for p in read_jsonl(run_dir / "personas.jsonl")]
    assert len(personas) == len(set(personas))

    report = json.loads((run_dir / "report.json").read_text())
    counts = Counter((t, v) for s in after for t, v in s["traits"].items())
    assert report["accepted"] == len(after)
    for trait, values in report["coverage"].items():
        for value, cell in values.items():
            assert cell["accepted"] == counts[(trait, value)] >= cell["target"]
