"""Runs whose novelty store is a real Chroma server (``chroma run`` on 127.0.0.1, started and
stopped by fixtures through personaloom.chroma_server): the same guarantees as the run
directory's own store, two runs on one server that never see each other, a server killed
mid-run (back in time, or only after the run gave up and then resumed), and novelty memory
on the server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from personaloom import vectors
from personaloom.chroma_server import ChromaServer
from personaloom.cli import main
from personaloom.memory import PREFIX
from personaloom.runner import run
from personaloom.store import read_jsonl
from personaloom.testing.chroma import KillAfter, server_ids
from personaloom.testing.runs import check_complete
from personaloom.tui.view import ViewLoader
from personaloom.vectors import PERSONAS, SAMPLES, connect, run_prefix

pytestmark = pytest.mark.integration

TRAITS = {"feature": {"values": ["dialogue", "moral"], "target": 5}}  # 10 samples


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One server for the tests that do not stop it (a start costs about 2 s)."""
    with ChromaServer(tmp_path_factory.mktemp("chroma") / "store") as started:
        yield started


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ChromaServer]:
    """A server of the test's own, for tests that kill it."""
    with ChromaServer(tmp_path / "chroma-server" / "store") as started:
        yield started


def check_run(run_dir: Path, url: str) -> list[dict]:
    """Complete, every id once and never also rejected, the report equal to the dataset, and
    the server's collections holding exactly the run's samples and personas."""
    samples = check_complete(run_dir)
    ids = [s["id"] for s in samples]
    assert server_ids(url, run_dir) == set(ids), "the server's ids differ from the accepted ids"
    personas = {p["id"] for p in read_jsonl(run_dir / "personas.jsonl")}
    assert server_ids(url, run_dir, PERSONAS) == personas
    return samples


def test_a_run_on_a_chroma_server_meets_its_targets(make_spec, server, tmp_path) -> None:
    spec = make_spec(traits=TRAITS, novelty={"threshold": 0.9, "store": server.url})
    result = run(spec, out=tmp_path / "run")
    assert result.status == "complete"
    samples = check_run(result.run_dir, server.url)
    assert len(samples) == 10
    assert not (result.run_dir / "chroma").exists(), "a local store was made too"
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert meta["novelty_store"] == server.url
    # The report's embedding measures come from the server, at the end of the run and
    # when `personaloom report` rebuilds it.
    assert result.report["diversity"]["embeddings"] == 10
    (result.run_dir / "report.json").unlink()
    assert main(["report", str(result.run_dir)]) == 0
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["diversity"]["embeddings"] == 10


def test_two_runs_on_one_server_never_see_each_other(make_spec, server, tmp_path) -> None:
    """The same spec twice: identical drafts (the reply cache), so a run that saw the other's
    samples would reject them all as near-duplicates."""
    spec = make_spec(traits=TRAITS, novelty={"threshold": 0.9, "store": server.url})
    first = run(spec, out=tmp_path / "first")
    second = run(spec, out=tmp_path / "second")
    first_samples, second_samples = (
        check_run(first.run_dir, server.url),
        check_run(second.run_dir, server.url),
    )
    assert [s["output"] for s in first_samples] == [s["output"] for s in second_samples]
    assert "near_duplicate" not in second.report["rejections"]


def test_chroma_url_flag_is_kept_for_the_resume(make_spec, server, tmp_path, capsys) -> None:
    """--chroma-url instead of novelty.store; a resume without the flag goes to the same server."""
    spec = make_spec(traits=TRAITS)
    out = tmp_path / "run"
    assert main(["run", str(spec), "--out", str(out), "--chroma-url", server.url + "/"]) == 0
    assert json.loads((out / "run.json").read_text())["novelty_store"] == server.url
    assert main(["run", "--resume", str(out)]) == 0
    check_run(out, server.url)
    assert not (out / "chroma").exists()
    assert main(["run", str(spec), "--chroma-url", "localhost:8000"]) == 2
    assert "--chroma-url localhost:8000: expected a Chroma server URL" in capsys.readouterr().err


def test_a_server_killed_and_back_within_the_retries(
    make_spec, own_server, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(vectors, "FLUSH_AT", 2)  # so the run writes to the server mid-run
    spec = make_spec(traits=TRAITS, novelty={"threshold": 0.9, "store": own_server.url})
    killer = KillAfter(own_server, 4, then=1.0)
    result = run(spec, out=tmp_path / "run", listeners=[killer])
    assert result.status == "complete"
    # It waited for the server (the scripted endpoint alone takes well under a second).
    assert killer.back_at is not None and killer.finished_at > killer.back_at
    check_run(result.run_dir, own_server.url)


def test_a_server_that_stays_down_stops_the_run_cleanly_and_it_resumes(
    make_spec, own_server, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(vectors, "FLUSH_AT", 2)
    monkeypatch.setattr(vectors, "RETRY_DELAYS", (0.2, 0.4))  # give up quickly
    spec = make_spec(traits=TRAITS, novelty={"threshold": 0.9, "store": own_server.url})
    out = tmp_path / "run"
    listener = KillAfter(own_server, 4, then=None)
    monkeypatch.setattr("personaloom.cli._print_event", listener)  # --events' listener
    assert main(["run", str(spec), "--out", str(out), "--events"]) == 1
    err = capsys.readouterr().err
    assert f"error: StoreUnavailable: the Chroma server at {own_server.url} did not answer" in err
    assert f"continue with  personaloom run --resume {out}" in err
    assert "Traceback" not in err
    assert json.loads((out / "run.json").read_text())["status"] == "error"
    written = {s["id"] for s in read_jsonl(out / "dataset.jsonl")}
    assert 4 <= len(written) < 10

    own_server.start()  # the same path and port
    assert main(["run", "--resume", str(out)]) == 0
    samples = check_run(out, own_server.url)
    assert written <= {s["id"] for s in samples}


def test_a_collection_the_server_lost_mid_run_is_rebuilt_on_resume(
    make_spec, server, tmp_path, monkeypatch, capsys
) -> None:
    """As if the server had been restarted on an empty path: the run stops naming the lost
    collection, and the resume makes it again from dataset.jsonl."""
    monkeypatch.setattr(vectors, "FLUSH_AT", 2)
    spec = make_spec(traits=TRAITS, novelty={"threshold": 0.9, "store": server.url})
    out = tmp_path / "run"

    def lose_samples(event: dict) -> None:
        if event["event"] == "sample_accepted" and event["accepted"] == 4:
            key = json.loads((out / "run.json").read_text())["store_key"]
            connect(server.url).delete_collection(run_prefix(key) + SAMPLES)

    monkeypatch.setattr("personaloom.cli._print_event", lose_samples)
    assert main(["run", str(spec), "--out", str(out), "--events"]) == 1
    err = capsys.readouterr().err
    assert "samples is gone from the Chroma server at " + server.url in err
    assert f"personaloom run --resume {out}" in err and "Traceback" not in err
    assert main(["run", "--resume", str(out)]) == 0
    check_run(out, server.url)


def test_a_new_run_against_a_server_that_is_not_there_writes_nothing(
    make_spec, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(vectors, "RETRY_DELAYS", (0.1,))
    spec = make_spec(traits=TRAITS, novelty={"threshold": 0.9, "store": "http://127.0.0.1:9"})
    assert main(["run", str(spec), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "the Chroma server at http://127.0.0.1:9 did not answer" in err
    assert "nothing was written" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_novelty_memory_on_the_server(make_spec, server, tmp_path, capsys) -> None:
    novelty = {"threshold": 0.9, "store": server.url, "memory": "server-stories"}
    spec = make_spec(traits=TRAITS, novelty=novelty, critic={"min_score": 3, "max_revisions": 0})
    first = run(spec, out=tmp_path / "first")
    second = run(spec, out=tmp_path / "second")
    check_run(first.run_dir, server.url)
    check_run(second.run_dir, server.url)
    seen = [
        r for r in read_jsonl(second.run_dir / "rejected.jsonl") if r["reason"] == "seen_before"
    ]
    assert seen and second.report["memory"] == {"name": "server-stories", "rejected": len(seen)}
    first_key = json.loads((first.run_dir / "run.json").read_text())["store_key"]
    assert all(r["novelty"]["neighbour_id"].startswith(first_key + "/") for r in seen)
    held = connect(server.url).get_collection(PREFIX + "server-stories").count()
    assert held == first.report["accepted"] + second.report["accepted"]
    assert not (tmp_path / "memory" / "server-stories").exists(), "a local memory was made"
    # `personaloom watch` reads the run's files only, and shows the count too.
    view = ViewLoader(second.run_dir)
    try:
        assert view.load().report["memory"] == second.report["memory"]
    finally:
        view.close()

    capsys.readouterr()
    assert main(["memory", "list", "--chroma-url", server.url]) == 0
    assert f"server-stories: {held} samples (on the Chroma server at {server.url})" in (
        capsys.readouterr().out
    )
    assert main(["memory", "show", "server-stories", "--chroma-url", server.url]) == 0
    out = capsys.readouterr().out
    assert f"{first_key}: {first.report['accepted']} samples" in out
    assert main(["memory", "drop", "server-stories", "--yes", "--chroma-url", server.url]) == 0
    assert f"dropped novelty memory server-stories ({held} samples" in capsys.readouterr().out
    names = [c.name for c in connect(server.url).list_collections()]
    assert PREFIX + "server-stories" not in names
