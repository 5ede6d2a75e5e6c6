"""The controls of a supervised run, driven through the keyboard with Pilot: pause and
resume, graceful stop then resume, review, the live bars, quitting mid-run, and how fast
keys are handled while LLM calls are in flight."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest
from textual import events

from personaloom.runner import arun
from personaloom.store import read_jsonl
from personaloom.tui.app import PersonaloomApp
from personaloom.tui.screens.bars import BarsScreen
from personaloom.tui.screens.dashboard import DashboardScreen
from personaloom.tui.screens.review import ReviewScreen
from personaloom.tui.screens.samples import SamplesScreen
from personaloom.tui.widgets.counters import Counters

SLOW = pytest.mark.parametrize("latency", [0.15])  # calls stay in flight a while

BIGGER = {
    "feature": {"values": ["dialogue", "moral", "twist"], "target": 3},
    "setting": {"values": ["forest", "sea", "city"], "target": 3},
}


def _app(make_spec, tmp_path: Path, traits=BIGGER, **kwargs) -> PersonaloomApp:
    spec = make_spec(traits=traits, budget={"max_calls": 600}, personas={"max_uses": 3})
    return PersonaloomApp(spec=spec, out=tmp_path / "run", **kwargs)


@SLOW
async def test_pause_holds_new_batches_until_resumed(make_spec, tmp_path, wait_for) -> None:
    app = _app(make_spec, tmp_path)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.state.session_accepted >= 1)
        await pilot.press("p")
        assert app.control.paused and app.run_status() == "paused"
        busy = lambda: any(line.busy for line in app.state.agents() if line.agent != "planner")  # noqa: E731
        await wait_for(pilot, lambda: not busy())  # drafts in flight finish
        await pilot.pause(0.3)
        held = (app.state.round, app.state.session_accepted + app.state.session_rejected)
        await pilot.pause(1.0)
        assert (app.state.round, app.state.session_accepted + app.state.session_rejected) == held
        assert "paused" in _text(app.screen.query_one(Counters))
        await pilot.press("p")
        assert not app.control.paused
        await wait_for(pilot, lambda: app.state.session_accepted > held[1])
        await pilot.press("s")  # a graceful stop, so the test does not wait for the whole run
        await wait_for(pilot, lambda: not app.run_active)


@SLOW
async def test_stop_checkpoints_and_tui_resume_completes(make_spec, tmp_path, wait_for) -> None:
    app = _app(make_spec, tmp_path)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.state.session_accepted >= 1)
        await pilot.press("s")
        # "stopped" already when the drafts in flight were done before the key was handled
        assert app.run_status() in ("stopping", "stopped")
        await wait_for(pilot, lambda: not app.run_active)
        assert app.result.status == "stopped" and app.exit_code == 130
        assert app.check_action("pause", ()) is None  # shown, but disabled: the run is over
        await pilot.press("q")
    assert app.return_value == 130
    run_dir = tmp_path / "run"
    kept = [s["id"] for s in read_jsonl(run_dir / "dataset.jsonl")]
    assert kept and '"status": "stopped"' in (run_dir / "run.json").read_text()

    resumed = PersonaloomApp(resume=run_dir)
    async with resumed.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: not resumed.run_active, timeout=60)
        assert resumed.result.status == "complete"
        assert resumed.state.session_start is not None
        assert any(item.kind == "accepted" for item in resumed.state.feed)  # history replayed
    ids = [s["id"] for s in read_jsonl(run_dir / "dataset.jsonl")]
    assert len(ids) == len(set(ids)) and set(kept) <= set(ids)


@SLOW
async def test_review_rejects_and_approves(make_spec, tmp_path, wait_for) -> None:
    app = _app(make_spec, tmp_path, review=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        assert app.run_status() == "review"
        review = app.screen
        first = review.samples[0]["id"]
        await pilot.press("x")  # reject the first
        await pilot.press("A")  # approve the rest of the batch
        # The next batch's review can be up before a poll sees the dashboard in between:
        # wait for this screen to go, then for the next one.
        await wait_for(pilot, lambda: app.screen is not review)
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))  # the next batch
        await pilot.press("v")  # review off: approves this batch, no more reviews
        assert not app.control.review
        await wait_for(pilot, lambda: not app.run_active, timeout=60)
        assert app.result.status == "complete"
    rejected = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "rejected.jsonl")}
    assert rejected[first]["reason"] == "human_rejected"
    assert first not in {s["id"] for s in read_jsonl(tmp_path / "run" / "dataset.jsonl")}


@SLOW
async def test_bars_change_the_critic_bar_for_drafts_to_come(
    make_spec, tmp_path, responder, wait_for
) -> None:
    responder.score = 4
    app = _app(make_spec, tmp_path)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.view is not None)
        await pilot.press("b")
        assert isinstance(app.screen, BarsScreen)
        field = app.screen.query_one("#min-score")
        field.value = ""
        field.focus()
        await pilot.press("5", "enter")
        assert app.control.min_score == 5 and app.control.novelty_threshold is None
        assert "critic ≥ 5 (live)" in _text(app.screen.query_one(Counters))
        await wait_for(pilot, lambda: any("low_quality" in item.detail for item in app.state.feed))
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.run_active)


@SLOW
async def test_quit_mid_run_cuts_it_short_resumably(make_spec, tmp_path, wait_for) -> None:
    app = _app(make_spec, tmp_path)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.state.session_accepted >= 1)
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_value == 130 and app.live._task.done()
    run_dir = tmp_path / "run"
    assert '"status": "interrupted"' in (run_dir / "run.json").read_text()
    result = await arun(resume=run_dir)  # nothing lost or duplicated
    ids = [s["id"] for s in read_jsonl(run_dir / "dataset.jsonl")]
    assert result.status == "complete" and len(ids) == len(set(ids))


async def test_a_failing_run_is_shown_not_fatal(tmp_path, make_spec, wait_for) -> None:
    spec = make_spec(models={"default": {"base_url": "http://127.0.0.1:9/v1", "timeout": 2}})
    app = PersonaloomApp(spec=spec, out=tmp_path / "run")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: not app.run_active, timeout=60)
        assert app.is_running and app.exit_code == 1 and app.error
        await pilot.press("q")
    assert app.return_value == 1


@pytest.mark.timing
@pytest.mark.parametrize("latency", [0.3])
async def test_keys_are_handled_fast_while_calls_are_in_flight(
    make_spec, tmp_path, wait_for
) -> None:
    """A key sent the way the terminal driver sends it, while the graph's thread makes LLM
    calls and floods events: how long until its action runs, and until the screen it asked
    for is painted (a full repaint, Textual's own cost). The issue asks for well under
    200 ms; on a shared 2-core machine the odd press waits for the scheduler, so the bounds
    are on the median and the 90th percentile.

    Marked ``timing``: a loaded machine fails it for no fault of the code, so ``make test``
    skips it; run it with ``pytest --run-timing -m timing`` (or
    ``PERSONALOOM_TIMING_TESTS=1``), on a machine not busy with other work."""
    many = {trait: {**t, "target": 20} for trait, t in BIGGER.items()}  # never done here
    app = _app(make_spec, tmp_path, traits=many)
    handled: list[float] = []
    switch_mode = app.action_switch_mode

    async def timed_switch(mode: str) -> None:
        handled.append(time.perf_counter())
        await switch_mode(mode)

    app.action_switch_mode = timed_switch  # type: ignore[method-assign]
    to_action, to_paint, in_flight = [], [], 0
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.state.session_accepted >= 1)
        for _ in range(10):
            for key, screen in (("3", SamplesScreen), ("1", DashboardScreen)):
                assert app.run_active  # the graph really is running
                in_flight += any(line.busy for line in app.state.agents())
                painted = asyncio.Event()
                pressed = time.perf_counter()
                app._driver.send_message(events.Key(key, key))
                while not isinstance(app.screen, screen):
                    await asyncio.sleep(0.001)
                app.screen.call_after_refresh(painted.set)
                await painted.wait()
                to_paint.append(time.perf_counter() - pressed)
                to_action.append(handled[-1] - pressed)
            await asyncio.sleep(0.2)
        await pilot.press("q")  # cut short: the test has what it came for
        await wait_for(pilot, lambda: not app.is_running)
    assert in_flight >= 14  # most presses found an agent busy on a call
    print(
        f"key -> action: median {statistics.median(to_action) * 1000:.1f} ms, "
        f"max {max(to_action) * 1000:.1f} ms; key -> screen painted: median "
        f"{statistics.median(to_paint) * 1000:.1f} ms, max {max(to_paint) * 1000:.1f} ms "
        f"({len(to_paint)} presses)"
    )
    assert statistics.median(to_action) < 0.05 and _p90(to_action) < 0.2
    assert statistics.median(to_paint) < 0.2


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def _text(widget) -> str:
    """What a widget shows, with runs of spaces collapsed (lines wrap by width)."""
    lines = (widget.render_line(y).text for y in range(widget.size.height))
    return " ".join(" ".join(lines).split())
