"""The three examples, run as a user would (`personaloom run`), against an OpenAI-compatible
endpoint: here the scripted one, configured only through the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personaloom.cli import main
from personaloom.store import read_jsonl

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("example", ["tiny-stories", "math-problems", "user-prompts"])
def test_example_meets_every_target(
    example: str, endpoint, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    spec = REPO / "examples" / example / "spec.yaml"
    out = tmp_path / "run"
    code = main(["run", str(spec), "--out", str(out), "--events", "--embeddings", "openai"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete" and not report["unmet"]
    dataset = read_jsonl(out / "dataset.jsonl")
    assert len({s["id"] for s in dataset}) == len(dataset) == report["accepted"]
    for trait in report["coverage"].values():
        for cell in trait.values():
            assert cell["accepted"] >= cell["target"]
