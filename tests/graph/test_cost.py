"""Cost from a user's side: prices in the spec, cost counted from the token usage the endpoint
reports, in events, report and run.json, and ``budget.max_cost`` ending a run like the other
budgets, across resumes."""

from __future__ import annotations

import json
from pathlib import Path

from personaloom.cli import main
from personaloom.control import RunControl
from personaloom.runner import EXIT_BUDGET, run
from personaloom.traces import TraceStore

# The conftest spec names a base URL and no model: every role calls "gpt-4o-mini".
PRICES = {"gpt-4o-mini": {"input": 0.15, "output": 0.60}}
BIG = {"setting": {"values": ["forest", "sea"], "target": 10}}


def cost_from_calls(run_dir: Path, prices: dict[str, dict[str, float]]) -> float:
    """What the calls in traces.sqlite cost, computed here from their rows."""
    traces = TraceStore(run_dir / "traces.sqlite", readonly=True)
    try:
        total = 0.0
        for call in traces.calls("replay_of IS NULL AND cache_hit = 0"):
            price = prices[json.loads(call["params"])["model"]]
            total += (call["prompt_tokens"] or 0) * price["input"]
            total += (call["completion_tokens"] or 0) * price["output"]
        return total / 1_000_000
    finally:
        traces.close()


def test_cost_is_counted_from_reported_usage(make_spec, tmp_path: Path) -> None:
    events: list[dict] = []
    result = run(make_spec(prices=PRICES), out=tmp_path / "run", listeners=[events.append])
    assert result.status == "complete"
    expected = cost_from_calls(result.run_dir, PRICES)
    cost = result.report["cost"]
    assert expected > 0 and abs(cost["total"] - expected) < 1e-6
    assert set(cost["by_agent"]) == {"persona_miner", "persona_relater", "writer", "critic"}
    assert abs(sum(a["cost"] for a in cost["by_agent"].values()) - expected) < 1e-5
    assert sum(a["calls"] for a in cost["by_agent"].values()) == result.report["calls"]
    assert cost["unpriced_models"] == [] and cost["max_cost"] is None
    # Events: every batch says what was spent so far, the end says it all.
    batches = [e["cost"] for e in events if e["event"] == "batch"]
    assert batches == sorted(batches) and batches[-1] > 0
    finished = events[-1]
    assert finished["event"] == "run_finished" and abs(finished["cost"] - expected) < 1e-6
    assert finished["calls"] == result.report["calls"]
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert abs(meta["spent"]["cost"] - expected) < 1e-6
    markdown = (result.run_dir / "report.md").read_text()
    assert "## Cost" in markdown and "| writer |" in markdown


def test_cache_hits_cost_nothing(make_spec, tmp_path: Path) -> None:
    spec = make_spec(prices=PRICES)
    first = run(spec, out=tmp_path / "first")
    again = run(spec, out=tmp_path / "again")
    assert first.report["cost"]["total"] > 0
    assert again.report["calls"] == 0 and again.report["cost"]["total"] == 0


def test_unpriced_spec_reports_no_cost(make_spec, tmp_path: Path) -> None:
    result = run(make_spec(), out=tmp_path / "run")
    assert "cost" not in result.report
    assert "## Cost" not in (result.run_dir / "report.md").read_text()


def test_max_cost_ends_the_run_with_exit_3(make_spec, tmp_path: Path, capsys) -> None:
    spec = make_spec(traits=BIG, prices=PRICES, budget={"max_calls": None, "max_cost": 0.0005})
    code = main(["run", str(spec), "--out", str(tmp_path / "run"), "--events"])
    assert code == EXIT_BUDGET
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finished = events[-1]
    assert finished["event"] == "run_finished"
    assert finished["status"] == "budget" and finished["stop_reason"] == "max_cost"
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["unmet"] and report["cost"]["max_cost"] == 0.0005
    # Stopped at the limit: calls in flight when it was reached (concurrency 2) still finish.
    spent = cost_from_calls(tmp_path / "run", PRICES)
    assert 0.0005 <= spent < 0.0005 * 1.5
    assert "of a budget of" in (tmp_path / "run" / "report.md").read_text()


def test_spent_cost_survives_a_resume_without_traces(make_spec, tmp_path: Path) -> None:
    limit = 0.0008
    spec = make_spec(
        traits=BIG,
        prices=PRICES,
        budget={"max_calls": None, "max_cost": limit},
        cache={"enabled": False},
    )
    control = RunControl()

    def stop_early(event: dict) -> None:
        if event["event"] == "sample_accepted":
            control.stop()

    first = run(spec, out=tmp_path / "run", listeners=[stop_early], control=control)
    assert first.status == "stopped"
    before = json.loads((first.run_dir / "run.json").read_text())["spent"]["cost"]
    assert 0 < before < limit
    for name in ("traces.sqlite", "traces.sqlite-wal", "traces.sqlite-shm"):
        (first.run_dir / name).unlink(missing_ok=True)

    resumed = run(resume=first.run_dir, notice=lambda message: None)
    assert resumed.status == "budget" and resumed.stop_reason == "max_cost"
    this_session = cost_from_calls(first.run_dir, PRICES)  # the new traces hold only these
    assert this_session < limit <= before + this_session + 1e-9
    assert resumed.report["cost"]["total"] >= before + this_session - 1e-6
