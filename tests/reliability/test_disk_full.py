"""A full disk mid-run (the run directory on a small tmpfs, then filled up): a clear error
naming the directory and what to do, the files intact, and a resume once space is freed
that loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from personaloom.runlock import effective_status
from personaloom.store import read_jsonl
from personaloom.testing.scripted import PersonaloomResponder, ScriptedEndpoint


@pytest.fixture
def endpoint():
    with ScriptedEndpoint(PersonaloomResponder(), latency=0.05) as server:
        yield server


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    ballast = mount / "ballast"
    subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", "bs=64k"], capture_output=True)
    return ballast


def test_full_disk_is_a_clear_error_and_the_run_resumes(make_spec, small_disk: Path) -> None:
    spec = make_spec(traits={"feature": {"values": ["dialogue", "moral"], "target": 8}})
    run_dir = small_disk / "run"
    command = [sys.executable, "-m", "personaloom.cli", "run", str(spec)]
    proc = subprocess.Popen(
        [*command, "--out", str(run_dir)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    dataset = run_dir / "dataset.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if dataset.exists() and len(dataset.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the disk filled up"
    ballast = _fill(small_disk)
    _, err = proc.communicate(timeout=120)
    err = err.decode()

    assert proc.returncode == 1, err
    assert f"no space left on the device holding {run_dir}" in err
    assert f"personaloom run --resume {run_dir}" in err
    assert "Traceback" not in err
    before = [json.loads(line) for line in dataset.read_text().splitlines()]  # all parse
    meta = json.loads((run_dir / "run.json").read_text())
    assert effective_status(run_dir, meta) in ("error", "interrupted")

    os.remove(ballast)
    resumed = subprocess.run([*command, "--resume", str(run_dir)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    after = read_jsonl(dataset)
    ids = [s["id"] for s in after]
    assert len(ids) == len(set(ids)) == 16
    assert ids[: len(before)] == [s["id"] for s in before], "nothing written before is lost"
