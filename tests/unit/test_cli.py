"""The command line: validate, init, run's exit codes and events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personaloom.cli import main


def test_validate_ok(make_spec, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(make_spec())]) == 0
    assert "ok" in capsys.readouterr().out


def test_validate_reports_every_problem_with_its_field(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: bad\n"
        "task: {instruction: '', output: {title: strr}}\n"
        "corpus: [{path: missing/*.txt}]\n"
        "traits: {level: {values: [a, a], target: many}}\n"
        "concurency: 3\n"
    )
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "task.instruction: String should have at least 1 character" in err
    assert "task.output: field 'title': type 'strr' is not one of" in err
    assert "traits.level.values: duplicate values: ['a']" in err
    assert "traits.level.target" in err
    assert "concurency: unknown field" in err


def test_validate_checks_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_bytes(b"\x00\x01binary")
    (tmp_path / "texts.jsonl").write_text('{"text": "fine"}\nnot json\n{"body": "x"}\n')
    (tmp_path / "spec.yaml").write_text(
        "name: files\n"
        "task: {instruction: x, output: {q: str}}\n"
        "corpus: [{path: corpus/*.txt}, {jsonl: texts.jsonl}, {path: nothing/*.md}]\n"
        "vocabulary: {noun: nouns.txt}\n"
        "total: 3\n"
    )
    assert main(["validate", str(tmp_path / "spec.yaml")]) == 2
    err = capsys.readouterr().err
    assert "corpus[0].path:" in err and "is binary, expected UTF-8 text" in err
    assert "corpus[1].jsonl:" in err and "texts.jsonl:2: invalid JSON" in err
    assert "texts.jsonl:3: no string field 'text'" in err
    assert "corpus[2].path: no file matches 'nothing/*.md'" in err
    assert "vocabulary.noun: file not found" in err


def test_invalid_yaml_names_the_line(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: x\ntask: [unclosed\n")
    assert main(["validate", str(spec)]) == 2
    assert "invalid YAML: line 3" in capsys.readouterr().err


def test_init_writes_a_valid_starter(tmp_path: Path, capsys) -> None:
    assert main(["init", str(tmp_path / "new")]) == 0
    assert main(["validate", str(tmp_path / "new" / "spec.yaml")]) == 0
    assert main(["init", str(tmp_path / "new")]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err


def test_run_prints_events_and_exits_0(make_spec, tmp_path: Path, capsys) -> None:
    assert main(["run", str(make_spec()), "--out", str(tmp_path / "run"), "--events"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = {e["event"] for e in events}
    assert {"run_started", "batch", "sample_accepted", "run_finished"} <= kinds
    assert events[-1]["status"] == "complete"


def test_run_exit_code_when_the_budget_ends_it(make_spec, tmp_path: Path, capsys) -> None:
    spec = make_spec(budget={"max_calls": 5})
    assert main(["run", str(spec), "--out", str(tmp_path / "run"), "--events"]) == 3
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "budget" and report["calls"] <= 5


def test_run_refuses_an_existing_run_dir(make_spec, tmp_path: Path, capsys) -> None:
    spec = str(make_spec())
    assert main(["run", spec, "--out", str(tmp_path / "run"), "--events"]) == 0
    assert main(["run", spec, "--out", str(tmp_path / "run"), "--events"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_refuses_a_changed_spec(make_spec, tmp_path: Path, capsys) -> None:
    spec = make_spec()
    assert main(["run", str(spec), "--out", str(tmp_path / "run"), "--events"]) == 0
    spec.write_text(spec.read_text().replace("seed: 0", "seed: 1"))
    assert main(["run", str(spec), "--resume", str(tmp_path / "run")]) == 2
    assert "differs" in capsys.readouterr().err


def test_report_regenerates_with_the_stop_reason(make_spec, tmp_path: Path, capsys) -> None:
    spec = make_spec(budget={"max_calls": 5})
    assert main(["run", str(spec), "--out", str(tmp_path / "run"), "--events"]) == 3
    (tmp_path / "run" / "report.json").unlink()
    assert main(["report", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "budget" and report["stop_reason"] == "max_calls"
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_out_and_resume_exclude_each_other(tmp_path: Path, capsys) -> None:
    assert main(["run", "--resume", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "exclude each other" in capsys.readouterr().err
