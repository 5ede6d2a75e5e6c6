"""`personaloom traces`: list with filters and totals, show, lineage, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from personaloom.cli import main
from personaloom.store import read_jsonl
from personaloom.testing.scripted import PersonaloomResponder


@pytest.fixture
def run_dir(make_spec, tmp_path: Path, responder: PersonaloomResponder) -> Path:
    responder.omit_words_every = 3  # some drafts need a revision, some get rejected
    out = tmp_path / "run"
    spec = make_spec(critic={"min_score": 3, "max_revisions": 1})
    assert main(["run", str(spec), "--out", str(out), "--events"]) == 0
    return out


def test_list_filters_and_totals(run_dir: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["traces", str(run_dir), "--agent", "critic"]) == 0
    out = capsys.readouterr().out
    assert "critic" in out and "writer" not in out.split("totals per agent")[0]
    assert "mean ms" in out and "p95 ms" in out
    assert main(["traces", str(run_dir), "--slowest", "2"]) == 0
    assert "2 of 2 calls" in capsys.readouterr().out
    assert main(["traces", str(run_dir), "--since", "1h", "--status", "error"]) == 0
    assert "0 of 0 calls" in capsys.readouterr().out
    assert main(["traces", str(run_dir), "--since", "yesterday-ish"]) == 2


def test_show_prints_messages_reply_and_template(run_dir: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["traces", "show", str(run_dir), "1"]) == 0
    out = capsys.readouterr().out
    assert "persona_miner.md.j2 @" in out and "raw reply" in out and "Who is likely to" in out
    assert main(["traces", "show", str(run_dir), "9999"]) == 2
    assert "no call 9999" in capsys.readouterr().err


def test_lineage_goes_from_source_text_to_record(run_dir: Path, capsys) -> None:
    revised = next(s for s in read_jsonl(run_dir / "dataset.jsonl") if s["lineage"]["revisions"])
    capsys.readouterr()
    assert main(["traces", "lineage", str(run_dir), revised["id"]]) == 0
    out = capsys.readouterr().out
    assert "source text corpus/" in out and "writer: first draft" in out
    assert "writer: revision 1" in out and "accepted" in out
    assert revised["persona"]["id"] in out


def test_export_jsonl_and_openai(run_dir: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "calls.jsonl"
    assert main(["traces", "export", str(run_dir), "-o", str(target)]) == 0
    rows = read_jsonl(target)
    assert rows and all(r["messages"] and "params" in r for r in rows)
    capsys.readouterr()
    assert main(["traces", "export", str(run_dir), "--format", "openai", "--agent", "critic"]) == 0
    pairs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert pairs and all(p["messages"][-1]["role"] == "assistant" for p in pairs)
    assert all(json.loads(p["messages"][-1]["content"])["score"] for p in pairs)


def test_replay_with_an_edited_critic_prompt_changes_verdicts(
    make_spec, tmp_path: Path, responder: PersonaloomResponder, capsys
) -> None:
    responder.accept_rate = {"moral": 0.0}
    out = tmp_path / "run"
    spec = make_spec(critic={"min_score": 3, "max_revisions": 0}, budget={"max_calls": 40})
    main(["run", str(spec), "--out", str(out), "--events"])
    report = json.loads((out / "report.json").read_text())
    assert report["rejections"]["trait_mismatch"] >= 1
    # The scripted critic can only fail a trait it is asked about in its usual words.
    edited = tmp_path / "critic.md.j2"
    source = (Path(__file__).resolve().parents[2] / "prompts" / "critic.md.j2").read_text()
    edited.write_text(source.replace("does it have", "is there"))
    capsys.readouterr()
    assert main(["traces", "replay", str(out), "--all-rejected", "--prompt", str(edited)]) == 0
    text = capsys.readouterr().out
    assert "trait_mismatch" in text and "would now pass the critic" in text
    changed = re.search(r"(\d+) of (\d+) replies changed their outcome", text)
    assert changed and int(changed.group(1)) >= 1

    # Replays are traces of their own, linked to the original, and not billed to the run.
    from personaloom.traces import TraceStore

    traces = TraceStore(out / "traces.sqlite", readonly=True)
    replays = traces.calls("replay_of IS NOT NULL")
    assert replays and all(r["node"] == "replay" for r in replays)
    assert traces.usage().calls == report["calls"]


def test_replay_one_call_with_a_diff(run_dir: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["traces", "replay", str(run_dir), "1", "-n", "2", "--temperature", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "replay 1 of call 1 (persona_miner)" in out and "replay 2 of call 1" in out
    assert "diff against the recorded reply" in out
    assert main(["traces", "replay", str(run_dir)]) == 2  # neither CALL_ID nor --all-rejected
