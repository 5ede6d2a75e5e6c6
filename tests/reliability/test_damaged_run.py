"""A stopped run's directory damaged one file at a time, then resumed: the run recovers from
dataset.jsonl, or refuses with an error naming the file and what to do, and after doing
what it says the run completes. Never a sample silently lost or written twice."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from personaloom.control import RunControl
from personaloom.runner import run
from personaloom.store import read_jsonl

TARGET = 5  # per value, two values


def _torn(name: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        with (run_dir / name).open("a") as handle:
            handle.write('{"id": "s99999-000", "persona')

    return damage


def _deleted(name: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        for path in run_dir.glob(name + "*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    return damage


def _garbage(name: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        for path in run_dir.glob(name + "-*"):  # SQLite's -wal and -shm
            path.unlink()
        (run_dir / name).write_bytes(b"this is not a database " * 400)

    return damage


def _chroma_garbage(run_dir: Path) -> None:
    (run_dir / "chroma" / "chroma.sqlite3").write_bytes(b"garbage " * 1000)


def _hnsw_truncated(run_dir: Path) -> None:
    for path in (run_dir / "chroma").rglob("*.bin"):
        with path.open("r+b") as handle:
            handle.truncate(max(0, path.stat().st_size // 3))


# damage -> the file an error must name, or None when the run recovers by itself
DAMAGES: dict[str, tuple[Callable[[Path], None], str | None]] = {
    "dataset.jsonl torn": (_torn("dataset.jsonl"), None),
    "rejected.jsonl torn": (_torn("rejected.jsonl"), None),
    "personas.jsonl torn": (_torn("personas.jsonl"), None),
    "checkpoints.sqlite deleted": (_deleted("checkpoints.sqlite"), None),
    "checkpoints.sqlite garbage": (_garbage("checkpoints.sqlite"), "checkpoints.sqlite"),
    "traces.sqlite deleted": (_deleted("traces.sqlite"), None),
    "traces.sqlite garbage": (_garbage("traces.sqlite"), "traces.sqlite"),
    "chroma/ deleted": (_deleted("chroma"), None),
    "chroma/ garbage": (_chroma_garbage, None),
    "chroma/ HNSW files truncated": (_hnsw_truncated, None),
}


def _stopped_run(make_spec, run_dir: Path) -> Path:
    """A run stopped after 4 of its 10 samples (the rest to come on resume)."""
    spec = make_spec(traits={"feature": {"values": ["dialogue", "moral"], "target": TARGET}})
    control = RunControl()

    def stop_early(event: dict) -> None:
        if event["event"] == "sample_accepted" and event["accepted"] >= 4:
            control.stop()

    result = run(spec, out=run_dir, listeners=[stop_early], control=control)
    assert result.status == "stopped"
    return spec


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_each_damaged_file_alone(make_spec, tmp_path: Path, damage: str, check_run) -> None:
    run_dir = tmp_path / "run"
    _stopped_run(make_spec, run_dir)
    before = [s["id"] for s in read_jsonl(run_dir / "dataset.jsonl")]
    harm, named = DAMAGES[damage]
    harm(run_dir)

    command = [sys.executable, "-m", "personaloom.cli", "run", "--resume", str(run_dir)]
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in resumed.stderr
    if named is not None:
        assert resumed.returncode == 2, resumed.stderr
        assert str(run_dir / named) in resumed.stderr and "mv " in resumed.stderr
        assert [s["id"] for s in read_jsonl(run_dir / "dataset.jsonl")] == before, "untouched"
        (run_dir / named).rename(run_dir / f"{named}.damaged")  # what the error says to do
        resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr

    samples = check_run(run_dir, 2 * TARGET)
    assert [s["id"] for s in samples][: len(before)] == before, "nothing lost, order kept"
