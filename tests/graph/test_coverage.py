"""The coverage engine end to end through the scripted endpoint: joint targets, persona
traits, overshoot under concurrency, budgets, the opening gate, and the report files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from personaloom.report import regenerate
from personaloom.runner import EXIT_BUDGET, run
from personaloom.store import read_jsonl
from personaloom.testing.scripted import PersonaloomResponder

GRID = {
    "level": {"values": ["easy", "hard"], "target": 0},
    "setting": {"values": ["forest", "sea", "town"], "target": 0},
}
PERSONAS = {"per_text": 3, "relate_depth": 1, "relate_per_persona": 2, "max_uses": 10}


def test_overshoot_is_bounded_by_the_drafts_in_flight(make_spec, tmp_path: Path) -> None:
    traits = {"setting": {"values": ["forest", "sea"], "target": 3}}
    spec = make_spec(traits=traits, concurrency=8, personas=PERSONAS)
    result = run(spec, out=tmp_path / "run")
    assert result.status == "complete"
    counts = Counter(s["traits"]["setting"] for s in read_jsonl(result.run_dir / "dataset.jsonl"))
    # Reservations: a batch never asks for more than is missing, so with every draft
    # accepted the run lands exactly on target despite 8 drafts in flight.
    assert counts == {"forest": 3, "sea": 3}


def test_joint_targets_fill_every_cell(make_spec, tmp_path: Path) -> None:
    spec = make_spec(
        traits=GRID,
        joint=[{"traits": ["level", "setting"], "target": 2}],
        concurrency=4,
        personas=PERSONAS,
    )
    result = run(spec, out=tmp_path / "run")
    assert result.status == "complete"
    cells = Counter(
        (s["traits"]["level"], s["traits"]["setting"])
        for s in read_jsonl(result.run_dir / "dataset.jsonl")
    )
    assert len(cells) == 6 and min(cells.values()) >= 2 and sum(cells.values()) <= 12 + 4
    grid = result.report["joint"][0]
    assert grid["traits"] == ["level", "setting"] and len(grid["cells"]) == 6
    assert all(c["accepted"] >= c["target"] == 2 and c["status"] == "met" for c in grid["cells"])


def test_persona_traits_come_from_the_persona(make_spec, tmp_path: Path) -> None:
    traits = {
        "age": {"values": ["young", "old"], "target": 2, "source": "persona"},
        "setting": {"values": ["forest", "sea"], "target": 2},
    }
    result = run(make_spec(traits=traits, personas=PERSONAS), out=tmp_path / "run")
    assert result.status == "complete"
    personas = {p["id"]: p for p in read_jsonl(result.run_dir / "personas.jsonl")}
    assert all(p["traits"]["age"] in ("young", "old") for p in personas.values())
    for sample in read_jsonl(result.run_dir / "dataset.jsonl"):
        assert sample["traits"]["age"] == personas[sample["persona"]["id"]]["traits"]["age"]
    assert all(result.report["coverage"]["age"][v]["accepted"] >= 2 for v in ("young", "old"))


def test_a_persona_value_nobody_carries_is_given_up(make_spec, tmp_path: Path) -> None:
    traits = {
        # The scripted miner labels by hash over the schema's values; with a value list this
        # long, some value is very unlikely to be carried by the few personas of 6 texts.
        "field": {
            "values": [f"f{i:02d}" for i in range(40)],
            "target": 1,
            "source": "persona",
        },
    }
    personas = {"per_text": 1, "relate_depth": 0, "max_uses": 5}
    result = run(make_spec(traits=traits, personas=personas), out=tmp_path / "run")
    assert result.status == "stalled" and result.exit_code == 4
    given_up = {s["value"] for s in result.report["stagnant"] if s["reason"] == "no_persona"}
    carried = {p["traits"]["field"] for p in read_jsonl(result.run_dir / "personas.jsonl")}
    assert given_up and given_up.isdisjoint(carried) and given_up | carried >= {"f00", "f39"}
    assert "no_persona" in result.stop_reason


def test_budget_ends_the_run_with_the_report_written(make_spec, tmp_path: Path) -> None:
    spec = make_spec(traits=GRID, joint=[{"traits": ["level", "setting"], "target": 3}])
    spec_text = spec.read_text().replace("max_calls: 200", "max_calls: 12")
    spec.write_text(spec_text)
    result = run(spec, out=tmp_path / "run")
    assert result.status == "budget" and result.exit_code == EXIT_BUDGET
    assert "calls" in result.stop_reason
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["calls"] <= 12 and report["unmet"]
    markdown = (result.run_dir / "report.md").read_text()
    assert "**Status:** budget" in markdown and "## Joint `level` × `setting`" in markdown
    assert (result.run_dir / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_md_shows_every_target_and_the_diversity(make_spec, tmp_path: Path) -> None:
    result = run(make_spec(), out=tmp_path / "run")
    (result.run_dir / "report.md").unlink()
    regenerate(result.run_dir)
    markdown = (result.run_dir / "report.md").read_text()
    for value in ("dialogue", "moral", "forest", "sea"):
        assert f"| {value} | 2 |" in markdown
    for measure in ("distinct-1 / 2 / 3", "most common opening", "Vendi score", "compression"):
        assert measure in markdown
    diversity = json.loads((result.run_dir / "report.json").read_text())["diversity"]
    assert diversity["samples"] == result.report["accepted"]
    assert diversity["embeddings"] == diversity["samples"], "vectors come from the Chroma store"
    assert diversity["vocabulary_coverage"]["noun"]["size"] == 5


def test_opening_gate_holds_while_generating(
    make_spec, responder: PersonaloomResponder, tmp_path: Path
) -> None:
    responder.duplicate_every = None
    traits = {"setting": {"values": ["forest", "sea"], "target": 4}}
    spec = make_spec(
        traits=traits,
        critic={"min_score": 3, "max_revisions": 2, "diversity": {"max_opening_share": 0.25}},
        personas=PERSONAS,
        budget={"max_calls": 400},
    )
    result = run(spec, out=tmp_path / "run")
    from personaloom.records import opening
    from personaloom.spec import load_spec

    loaded = load_spec(spec)
    openings = Counter(
        opening(loaded, s["output"]) for s in read_jsonl(result.run_dir / "dataset.jsonl")
    )
    assert max(openings.values()) <= 2, openings  # 25% of the 8 wanted
    gated = [
        r for r in read_jsonl(result.run_dir / "rejected.jsonl") if r["reason"] == "diversity_gate"
    ]
    verdicts = result.report["rejections"].get("diversity_gate", 0)
    assert verdicts == len(gated)


@pytest.mark.parametrize(
    ("budget", "limit"),
    [
        ({"max_calls": None, "max_tokens": 3000}, "max_tokens"),
        ({"max_calls": None, "max_seconds": 1.5}, "max_seconds"),
    ],
)
def test_token_and_time_budgets_end_the_run_cleanly(
    make_spec, endpoint, tmp_path: Path, budget: dict, limit: str
) -> None:
    endpoint.latency = 0.1  # so that wall time, too, runs out before the targets are met
    traits = {"setting": {"values": ["forest", "sea"], "target": 10}}
    result = run(make_spec(traits=traits, budget=budget), out=tmp_path / "run")
    assert result.status == "budget" and result.exit_code == EXIT_BUDGET
    assert result.stop_reason == limit
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["status"] == "budget" and report["unmet"]
    assert (result.run_dir / "report.md").exists() and (result.run_dir / "coverage.png").exists()
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert meta["status"] == "budget" and meta["stop_reason"] == limit
