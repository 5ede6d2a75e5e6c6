"""The dashboard shows what a priced run cost, against budget.max_cost, beside the tokens."""

from __future__ import annotations

from pathlib import Path

from personaloom.runner import arun
from personaloom.tui.app import PersonaloomApp
from personaloom.tui.widgets.counters import Counters


def _text(widget) -> str:
    return " ".join(" ".join(widget.render_line(y).text for y in range(widget.size.height)).split())


async def test_counters_show_the_cost(make_spec, tmp_path: Path, wait_for, finished_and_read):
    prices = {"gpt-4o-mini": {"input": 0.15, "output": 0.60}}
    spec = make_spec(prices=prices, budget={"max_calls": 200, "max_cost": 5})
    result = await arun(spec, out=tmp_path / "run", notice=lambda text: None)
    cost = result.report["cost"]["total"]
    assert cost > 0
    app = PersonaloomApp(watch=result.run_dir)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: finished_and_read(app))
        shown = _text(app.screen.query_one(Counters))
        await pilot.press("q")
    assert f"tokens {result.report['tokens']:,} cost {cost:.4f} of 5" in shown, shown


async def test_unpriced_run_shows_no_cost(finished_run: Path, wait_for, finished_and_read):
    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: finished_and_read(app))
        shown = _text(app.screen.query_one(Counters))
        await pilot.press("q")
    assert "tokens" in shown and "cost" not in shown
