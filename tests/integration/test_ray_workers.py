"""Runs whose drafts are done by Ray worker actors (``--workers N``), on a real local Ray
cluster started by a fixture on 127.0.0.1 and shut down after: the same guarantees as one
process (targets met, every id once, report = dataset, no near-duplicate pair), the same
dataset as one process for the same replies, a worker SIGKILLed mid-run, the coordinator
SIGKILLed and resumed, and clear errors without Ray or with settings workers cannot serve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from personaloom import vectors
from personaloom.chroma_server import ChromaServer
from personaloom.cli import main
from personaloom.endpoints import Overrides
from personaloom.runner import run
from personaloom.store import read_jsonl
from personaloom.testing.chroma import KillAfter, server_ids
from personaloom.testing.runs import check_complete
from personaloom.vectors import SAMPLES, NoveltyIndex, discard_clients

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.integration

TRAITS = {"feature": {"values": ["dialogue", "moral"], "target": 5}}  # 10 samples


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster for the module (its start costs seconds), 2 CPUs on 127.0.0.1."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    yield
    ray.shutdown()


def workers(n: int = 2) -> Overrides:
    return Overrides(workers=n)


def check_run(run_dir: Path, threshold: float) -> list[dict]:
    """Complete, every id once and never also rejected, the report equal to the dataset, the
    store holding exactly the accepted samples, and no pair at or above ``threshold``."""
    samples = check_complete(run_dir)
    ids = [s["id"] for s in samples]
    index = NoveltyIndex(run_dir / "chroma")
    try:
        vectors = index.vectors(SAMPLES)
    finally:
        discard_clients(run_dir / "chroma")
    assert set(vectors) == set(ids), "the store's samples differ from the dataset's"
    matrix = np.asarray([vectors[i] for i in ids], dtype=float)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    similarity = matrix @ matrix.T
    np.fill_diagonal(similarity, -1.0)
    assert similarity.max() < threshold, "a near-duplicate pair was accepted"
    return samples


def test_two_workers_meet_the_targets_as_one_process_would(
    cluster, make_spec, endpoint, tmp_path
) -> None:
    spec = make_spec(traits=TRAITS, concurrency=4)
    events: list[dict] = []
    result = run(spec, out=tmp_path / "ray", overrides=workers(2), listeners=[events.append])
    assert result.status == "complete"
    samples = check_run(result.run_dir, 0.9)
    assert len(samples) >= 10
    started = next(e for e in events if e["event"] == "workers_started")
    assert started["workers"] == 2 and len(set(started["pids"])) == 2
    assert os.getpid() not in started["pids"], "the drafts ran in this process"
    final = [e for e in events if e["event"] == "workers"][-1]["workers"]
    assert all(w["drafts"] > 0 for w in final), f"a worker did nothing: {final}"
    # The workers' calls are in this run's traces and budget, counted once.
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["calls"] == endpoint.chat_calls > 0
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert meta["spent"]["calls"] == report["calls"], "the budget missed the workers' calls"
    # The same spec on one process, from the same replies: no call, the same dataset.
    endpoint.reset_counts()
    alone = run(spec, out=tmp_path / "alone")
    assert endpoint.chat_calls == 0, "a worker's reply was not in the shared cache"
    assert read_jsonl(alone.run_dir / "dataset.jsonl") == samples


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    cluster, make_spec, endpoint, tmp_path
) -> None:
    endpoint.latency = 0.15  # drafts in flight on both workers when the kill lands
    spec = make_spec(traits={"feature": {"values": ["dialogue", "moral"], "target": 8}})
    events: list[dict] = []
    killed = threading.Event()

    def kill_one(event: dict) -> None:
        events.append(event)
        if event["event"] == "sample_accepted" and event["accepted"] == 3 and not killed.is_set():
            pid = next(e for e in events if e["event"] == "workers_started")["pids"][0]
            os.kill(pid, signal.SIGKILL)
            killed.set()

    result = run(spec, out=tmp_path / "run", overrides=workers(2), listeners=[kill_one])
    assert killed.is_set()
    assert result.status == "complete"
    samples = check_run(result.run_dir, 0.9)
    assert len(samples) >= 16
    lost = [e for e in events if e["event"] == "worker_lost"]
    assert lost, "the kill cost no draft: nothing was tested"
    final = [e for e in events if e["event"] == "workers"][-1]["workers"]
    assert final[0]["lost"] >= 1 and final[0]["pid"] != lost[0]["pid"], "not restarted"


def test_the_coordinator_killed_then_resumed_with_workers(
    cluster, make_spec, endpoint, tmp_path
) -> None:
    endpoint.latency = 0.1
    spec = make_spec(traits={"feature": {"values": ["dialogue", "moral"], "target": 8}})
    run_dir = tmp_path / "run"
    # The coordinator joins the fixture's cluster (--ray-address), which outlives it: Ray
    # ends the actors of a driver that died.
    address = ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "personaloom.cli", "run", str(spec), "--out", str(run_dir)]
    proc = subprocess.Popen(
        [*command, "--workers", "2", "--ray-address", address, "--events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    accepted = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        accepted += event["event"] == "sample_accepted"
        if accepted == 4:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert accepted == 4, "the run ended before the kill"
    before = {s["id"] for s in read_jsonl(run_dir / "dataset.jsonl")}
    assert len(before) >= 4
    _wait_gone(run_dir)
    result = run(resume=run_dir, overrides=workers(2))
    assert result.status == "complete"
    samples = check_run(run_dir, 0.9)
    assert before <= {s["id"] for s in samples}, "a sample written before the kill was lost"


def test_the_chroma_server_killed_mid_run_and_back_with_workers(
    cluster, make_spec, tmp_path, monkeypatch
) -> None:
    """The workers query the server too: its loss and return (same path and port) within
    the retries costs nothing but the wait."""
    monkeypatch.setattr(vectors, "FLUSH_AT", 2)
    with ChromaServer(tmp_path / "chroma-server" / "store") as server:
        spec = make_spec(traits=TRAITS, novelty={"threshold": 0.9, "store": server.url})
        killer = KillAfter(server, 4, then=1.0)
        result = run(spec, out=tmp_path / "run", overrides=workers(2), listeners=[killer])
        assert result.status == "complete"
        assert killer.back_at is not None and killer.finished_at > killer.back_at
        samples = read_jsonl(result.run_dir / "dataset.jsonl")
        ids = [s["id"] for s in samples]
        assert len(ids) == len(set(ids)) >= 10
        assert json.loads((result.run_dir / "report.json").read_text())["accepted"] == len(ids)
        assert server_ids(server.url, result.run_dir) == set(ids)


def _wait_gone(run_dir: Path, timeout: float = 30) -> None:
    """Until the killed run's own Chroma server (its child, which dies with it) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", str(run_dir / "chroma")], capture_output=True)
        if out.returncode != 0:
            return
        time.sleep(0.2)
    raise AssertionError("the killed run's Chroma server is still running")


def test_without_ray_the_error_names_the_extra(make_spec, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = make_spec()
    assert main(["run", str(spec), "--workers", "2", "--out", str(spec.parent / "r")]) == 2
    assert "personaloom[ray]" in capsys.readouterr().err
    assert not (spec.parent / "r").exists(), "a run directory was made"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"engine": "batch"}, "engine: batch"),
        ({"novelty": {"threshold": 0.9, "memory": "shared"}}, "novelty.memory shared"),
    ],
)
def test_settings_workers_cannot_serve_are_refused_first(
    make_spec, capsys, sections, message
) -> None:
    spec = make_spec(**sections)
    out = spec.parent / "r"
    assert main(["run", str(spec), "--workers", "2", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists(), "a run directory was made"


def test_bad_worker_counts_are_usage_errors(make_spec, capsys) -> None:
    spec = make_spec()
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exc:
            main(["run", str(spec), "--workers", bad])
        assert exc.value.code == 2
        assert "--workers" in capsys.readouterr().err


def test_ray_starts_under_a_dashboard_that_replaced_stdout(monkeypatch) -> None:
    """Textual swaps sys.stdout and sys.stderr for objects without a file descriptor, which
    Ray's start cannot use: it gets /dev/null meanwhile, and the dashboard's come back."""
    import io

    from personaloom.graphs.workers import _streams_with_descriptors

    class NoDescriptor(io.StringIO):
        def fileno(self) -> int:
            return -1

    fake_out, fake_err = NoDescriptor(), NoDescriptor()
    monkeypatch.setattr(sys, "stdout", fake_out)
    monkeypatch.setattr(sys, "stderr", fake_err)
    with _streams_with_descriptors():
        assert sys.stdout.fileno() >= 0 and sys.stderr.fileno() >= 0
        print("not on the dashboard")
    assert sys.stdout is fake_out and sys.stderr is fake_err
    assert fake_out.getvalue() == ""
