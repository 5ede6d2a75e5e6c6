"""``personaloom estimate`` from a user's side: the table and JSON it prints with no LLM call,
bad input refused, and its expected calls held against real runs on the scripted endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personaloom.cli import main
from personaloom.runner import run
from personaloom.store import read_jsonl
from personaloom.testing.scripted import PersonaloomResponder
from personaloom.traces import TraceStore

PRICES = {"gpt-4o-mini": {"input": 0.15, "output": 0.60}}
# Two critic traits; the scripted critic confirms each with the responder's accept_rate.
TRAITS = {
    "feature": {"values": ["dialogue", "moral"], "target": 4},
    "setting": {"values": ["forest", "sea"], "target": 4},
}


def estimate_json(spec: Path, capsys, *flags: str) -> dict:
    assert main(["estimate", str(spec), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def calls_by_agent(run_dir: Path) -> dict[str, int]:
    traces = TraceStore(run_dir / "traces.sqlite", readonly=True)
    try:
        rows = traces.token_usage()
    finally:
        traces.close()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.agent] = counts.get(row.agent, 0) + row.calls
    return counts


def test_estimate_makes_no_call_and_prints_a_table(make_spec, endpoint, capsys) -> None:
    spec = make_spec(prices=PRICES, budget={"max_calls": 20, "max_cost": 0.01})
    assert main(["estimate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert endpoint.chat_calls == 0 and endpoint.embedding_calls == 0
    assert "4 accepted samples meet the targets" in out
    header = next(line for line in out.splitlines() if "minimum" in line)
    assert header.split() == ["minimum", "expected", "worst"]
    for row in ("drafts", "personas", "calls", "  writer (gpt-4o-mini)", "input tokens", "cost"):
        assert any(line.startswith(row) for line in out.splitlines()), row
    assert "budget.max_calls 20: minimum fits" in out and "budget.max_cost 0.01:" in out
    assert "passes at 0.7 (--acceptance-rate)" in out and "characters / 4" in out


def test_estimate_json_scenarios_are_ordered_and_priced(make_spec, capsys) -> None:
    data = estimate_json(make_spec(traits=TRAITS, prices=PRICES), capsys)
    minimum, expected, worst = (data["scenarios"][n] for n in ("minimum", "expected", "worst"))
    assert minimum["calls_total"] <= expected["calls_total"] <= worst["calls_total"]
    assert minimum["calls"]["writer"] == minimum["calls"]["critic"] == data["samples"] == 8
    assert expected["calls"]["writer"] == pytest.approx(8 / 0.7, abs=1)
    assert worst["output_tokens"] > expected["output_tokens"]
    size = data["per_call"]["writer"]
    cost = (expected["input_tokens"] * 0.15 + expected["output_tokens"] * 0.60) / 1e6
    assert expected["cost_total"] == pytest.approx(cost, rel=0.01)  # one model for every role
    assert size["revision_input"] > size["input"] and size["max_output"] == 900


def test_estimate_matches_a_run_that_accepts_everything(make_spec, capsys, tmp_path) -> None:
    """The scripted critic confirms every trait: the run takes the minimum, call for call."""
    spec = make_spec(traits=TRAITS)
    data = estimate_json(spec, capsys, "--acceptance-rate", "1")
    result = run(spec, out=tmp_path / "run", notice=lambda text: None)
    assert result.report["rejected"] == 0
    expected = data["scenarios"]["expected"]
    assert expected == data["scenarios"]["minimum"]
    assert abs(expected["calls_total"] - result.report["calls"]) <= 0.25 * result.report["calls"]
    real = calls_by_agent(result.run_dir)
    assert expected["calls"]["writer"] == real["writer"] == real["critic"]


def test_estimate_within_a_factor_of_a_run_with_rejections(
    make_spec, endpoint, responder: PersonaloomResponder, capsys, tmp_path
) -> None:
    """A critic confirming each of two traits 80% of the time passes 64% of attempts: at that
    rate the expected calls are within 1.5x of what the run really took."""
    responder.accept_rate = 0.8
    spec = make_spec(traits=TRAITS, budget={"max_calls": 1000})
    data = estimate_json(spec, capsys, "--acceptance-rate", "0.64")
    result = run(spec, out=tmp_path / "run", notice=lambda text: None)
    assert result.status == "complete"
    revised = sum(s["lineage"]["revisions"] for s in read_jsonl(result.run_dir / "dataset.jsonl"))
    assert revised + result.report["rejected"] > 0, "the critic turned some attempts down"
    real, expected = result.report["calls"], data["scenarios"]["expected"]["calls_total"]
    assert real / 1.5 <= expected <= real * 1.5, (expected, real)
    # The writer's request is rendered as the run renders it: its size is close to the real
    # one (the scripted writer's personas are a little shorter than a real model's).
    sent = [
        sum(len(m["content"]) for m in body["messages"])
        + len(json.dumps({"extra_body": {"response_format": body["response_format"]}}))
        for body in (r["body"] for r in endpoint.requests if r["path"].endswith("/completions"))
        if body["response_format"]["json_schema"]["name"] == "Record"
        and "Your previous answer" not in body["messages"][-1]["content"]
    ]
    estimated = data["per_call"]["writer"]["input"] * 4  # tokens are characters / 4
    assert 0.8 <= estimated / (sum(sent) / len(sent)) <= 1.4


def test_a_pool_big_enough_needs_no_mining(make_spec, capsys, tmp_path) -> None:
    pool = tmp_path / "pool.jsonl"
    lines = [
        json.dumps({"persona": f"A nurse number {i} who sings in a choir."}) for i in range(30)
    ]
    pool.write_text("\n".join(lines) + "\n")
    spec = make_spec(
        corpus=[], personas={"pool": {"path": str(pool)}, "relate_depth": 0, "max_uses": 1}
    )
    data = estimate_json(spec, capsys)
    for scenario in data["scenarios"].values():
        assert scenario["calls"]["persona_miner"] == scenario["calls"]["persona_relater"] == 0
        assert scenario["personas"] == 30


def test_a_short_corpus_is_noted(make_spec, capsys) -> None:
    spec = make_spec(
        traits={"setting": {"values": ["forest", "sea"], "target": 20}},
        personas={"per_text": 1, "relate_depth": 0, "max_uses": 1},
    )
    data = estimate_json(spec, capsys)
    assert data["scenarios"]["minimum"]["calls"]["persona_miner"] == 6  # the corpus has 6 texts
    assert any("personas will write more drafts each" in note for note in data["notes"])


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--acceptance-rate", "0"], "--acceptance-rate"),
        (["--acceptance-rate", "1.5"], "--acceptance-rate"),
        (["--words", "0"], "--words"),
    ],
)
def test_bad_flags_exit_2(make_spec, capsys, flags: list[str], words: str) -> None:
    assert main(["estimate", str(make_spec()), *flags]) == 2
    assert words in capsys.readouterr().err


def test_bad_spec_exits_2_naming_file_and_field(make_spec, capsys) -> None:
    spec = make_spec(prices={"gpt-5-typo": {"input": 1, "output": 2}})
    assert main(["estimate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and "prices.gpt-5-typo" in err
