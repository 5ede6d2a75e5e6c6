"""Novelty memory across runs (``novelty.memory``, in the local memory folder): a second run
of the same spec, whose writer repeats the first run's replies (the reply cache answers the
same requests alike), rejects its copies as ``seen_before``; the report counts them; each
run's share of the memory follows its dataset.jsonl; ``personaloom memory`` lists, shows and
drops memories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from personaloom.cli import main
from personaloom.errors import ConfigError
from personaloom.memory import PREFIX, MemoryLock, memory_dir
from personaloom.runner import run
from personaloom.store import read_jsonl
from personaloom.vectors import discard_clients, local_client

# No revision: a draft that copies an earlier run's sample is rejected at once, so the
# rejections can be counted (with revisions it would be rewritten, and accepted).
CRITIC = {"min_score": 3, "max_revisions": 0}
NOVELTY = {"threshold": 0.9, "memory": "stories"}


def memory_rows(name: str = "stories") -> dict:
    """Every entry of a local memory: ids, embeddings and metadata."""
    folder = memory_dir() / name
    try:
        return (
            local_client(folder)
            .get_collection(PREFIX + name)
            .get(include=["embeddings", "metadatas"])
        )
    finally:
        discard_clients(folder)


def run_key(run_dir: Path) -> str:
    return json.loads((run_dir / "run.json").read_text())["store_key"]


def test_a_second_run_rejects_copies_of_the_first_runs_samples(make_spec, tmp_path) -> None:
    spec = make_spec(novelty=NOVELTY, critic=CRITIC)
    first = run(spec, out=tmp_path / "first")
    assert first.status == "complete"
    assert first.report["memory"] == {"name": "stories", "rejected": 0}
    first_ids = {s["id"] for s in read_jsonl(first.run_dir / "dataset.jsonl")}

    second = run(spec, out=tmp_path / "second")
    assert second.status == "complete"
    seen = [
        r for r in read_jsonl(second.run_dir / "rejected.jsonl") if r["reason"] == "seen_before"
    ]
    assert seen, "the repeated drafts were not rejected against memory"
    own = run_key(first.run_dir) + "/"
    for row in seen:  # each names the first run's sample it copied
        neighbour = row["novelty"]["neighbour_id"]
        assert neighbour.startswith(own) and neighbour.removeprefix(own) in first_ids
        assert row["novelty"]["similarity"] >= 0.9
        assert "novelty memory stories" in row["details"]
    assert second.report["memory"] == {"name": "stories", "rejected": len(seen)}
    assert second.report["rejections"]["seen_before"] == len(seen)
    assert (
        "**" + str(len(seen)) + "** drafts rejected" in (second.run_dir / "report.md").read_text()
    )

    # The memory holds both runs' samples, each with its run, and no accepted sample of the
    # second run is a near-duplicate of one of the first.
    rows = memory_rows()
    by_run: dict[str, dict[str, np.ndarray]] = {}
    for id_, vector, meta in zip(rows["ids"], rows["embeddings"], rows["metadatas"], strict=True):
        assert id_ == f"{meta['run']}/{meta['sample_id']}"
        by_run.setdefault(meta["run"], {})[meta["sample_id"]] = np.asarray(vector)
    second_ids = {s["id"] for s in read_jsonl(second.run_dir / "dataset.jsonl")}
    assert set(by_run) == {run_key(first.run_dir), run_key(second.run_dir)}
    assert set(by_run[run_key(first.run_dir)]) == first_ids
    assert set(by_run[run_key(second.run_dir)]) == second_ids
    old = np.stack(list(by_run[run_key(first.run_dir)].values()))
    new = np.stack(list(by_run[run_key(second.run_dir)].values()))
    similarity = (new @ old.T) / np.outer(np.linalg.norm(new, axis=1), np.linalg.norm(old, axis=1))
    assert similarity.max() < 0.9


def test_without_memory_the_same_copies_are_accepted(make_spec, tmp_path) -> None:
    """The control: a spec without novelty.memory accepts what the first run accepted."""
    run(make_spec(novelty=NOVELTY, critic=CRITIC), out=tmp_path / "first")
    plain = run(make_spec(name="plain", critic=CRITIC), out=tmp_path / "plain")
    assert "memory" not in plain.report
    assert "seen_before" not in plain.report["rejections"]


def test_a_resumed_run_puts_back_the_memory_entries_a_kill_lost(make_spec, tmp_path) -> None:
    first = run(make_spec(novelty=NOVELTY, critic=CRITIC), out=tmp_path / "first")
    key = run_key(first.run_dir)
    folder = memory_dir() / "stories"
    client = local_client(folder)
    collection = client.get_collection(PREFIX + "stories")
    lost = collection.get(where={"run": key}, include=[])["ids"][:2]
    collection.delete(ids=lost)  # as if the process died with these adds still buffered
    collection.upsert(  # and with an add whose sample never reached dataset.jsonl
        ids=[f"{key}/s99999-000"],
        embeddings=[[1.0] + [0.0] * 383],
        metadatas=[{"run": key, "sample_id": "s99999-000"}],
    )
    discard_clients(folder)

    again = run(resume=first.run_dir)
    assert again.status == "complete"
    ids = {s["id"] for s in read_jsonl(first.run_dir / "dataset.jsonl")}
    mine = [m["sample_id"] for m in memory_rows()["metadatas"] if m["run"] == key]
    assert sorted(mine) == sorted(ids)


def test_a_memory_in_use_by_another_process_is_refused_before_anything_is_written(
    make_spec, tmp_path
) -> None:
    folder = memory_dir() / "stories"
    folder.mkdir(parents=True)
    lock = MemoryLock(folder).acquire()  # another run holds it (a flock is per open file)
    try:
        with pytest.raises(ConfigError, match="in use by another personaloom process"):
            run(make_spec(novelty=NOVELTY), out=tmp_path / "run")
    finally:
        lock.release()
    assert not (tmp_path / "run").exists()


def test_a_memory_made_with_other_embeddings_is_refused(make_spec, tmp_path) -> None:
    run(make_spec(novelty=NOVELTY, critic=CRITIC), out=tmp_path / "first")
    other = make_spec(
        name="other", novelty=NOVELTY, embeddings={"provider": "openai", "model": "another-embed"}
    )
    with pytest.raises(ConfigError, match="holds embeddings of openai:scripted-embed"):
        run(other, out=tmp_path / "other-run")
    assert not (tmp_path / "other-run").exists()


def test_memory_list_show_and_drop(make_spec, tmp_path, capsys, monkeypatch) -> None:
    assert main(["memory", "list"]) == 0
    assert "no novelty memory in " in capsys.readouterr().out
    first = run(make_spec(novelty=NOVELTY, critic=CRITIC), out=tmp_path / "first")
    accepted = first.report["accepted"]
    capsys.readouterr()

    assert main(["memory", "list"]) == 0
    assert f"stories: {accepted} samples (in {memory_dir() / 'stories'})" in capsys.readouterr().out
    assert main(["memory", "show", "stories"]) == 0
    out = capsys.readouterr().out
    assert "embedder: openai:scripted-embed" in out
    assert f"{run_key(first.run_dir)}: {accepted} samples ({first.run_dir.resolve()})" in out
    assert main(["memory", "show", "nothing"]) == 2
    assert "there is no novelty memory 'nothing'" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["memory", "drop", "stories"]) == 2  # no terminal to ask, no --yes
    assert "confirm with --yes" in capsys.readouterr().err
    assert (memory_dir() / "stories").exists()
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda question: "n")
    assert main(["memory", "drop", "stories"]) == 0
    assert "kept" in capsys.readouterr().out and (memory_dir() / "stories").exists()
    assert main(["memory", "drop", "stories", "--yes"]) == 0
    assert f"dropped novelty memory stories ({accepted} samples" in capsys.readouterr().out
    assert not (memory_dir() / "stories").exists()

    # A new run starts the memory afresh.
    again = run(make_spec(name="again", novelty=NOVELTY, critic=CRITIC), out=tmp_path / "again")
    assert again.report["memory"]["rejected"] == 0


def test_bad_memory_names_and_store_urls_are_spec_errors(make_spec, capsys) -> None:
    spec = make_spec(novelty={"memory": "no/slashes", "store": "127.0.0.1:8000"})
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "novelty.memory: String should match pattern" in err
    assert "novelty.store: expected a Chroma server URL such as http://127.0.0.1:8000" in err
    assert main(["memory", "show", "no/slashes"]) == 2
    assert "'no/slashes' is not a memory name" in capsys.readouterr().err
