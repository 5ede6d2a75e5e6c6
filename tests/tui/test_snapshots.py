"""Snapshots of the main screens, on a finished run with fixed times and a fixed clock.

They come from the real engine's output on the scripted endpoint, so a change to what a
run writes (a new report section, say) changes them too: look at the diff, then
``pytest tests/tui --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input

from personaloom.tui.app import PersonaloomApp
from personaloom.tui.screens.bars import BarsScreen
from personaloom.tui.screens.call import CallScreen
from personaloom.tui.screens.review import ReviewScreen
from personaloom.tui.widgets.joint import JointGrid
from personaloom.tui.widgets.lineage import LineageTree

SIZE = (140, 40)


@pytest.fixture
def watch_app(finished_run: Path, monkeypatch: pytest.MonkeyPatch, clock) -> PersonaloomApp:
    monkeypatch.chdir(finished_run.parent)  # the header shows the path as given: "run"
    return PersonaloomApp(watch=Path("run"), clock=lambda: clock)


@pytest.fixture
def read(wait_for, finished_and_read):
    """``await read(pilot)``: until the watched run is read whole."""

    async def read(pilot) -> None:
        await wait_for(pilot, lambda: finished_and_read(pilot.app))
        dashboard = pilot.app.screen
        await wait_for(pilot, lambda: dashboard.query_one("#feed").row_count > 0)
        await wait_for(pilot, lambda: dashboard.query_one("#coverage").row_count > 0)
        counters = dashboard.query_one("#counters")
        await wait_for(pilot, lambda: "rejected by" in _shown(counters))  # laid out whole
        await pilot.pause(0.2)  # the tables size their columns when idle

    return read


def test_dashboard(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def test_personas(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#pool").row_count > 0)
        await pilot.press("down")

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def test_samples_filtered_by_trait_value(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)
        await pilot.app.show_samples(trait="feature=moral")
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#samples").row_count > 0)

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def test_traces(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#calls").row_count > 0)

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def test_sample_lineage(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)
        revised = next(s for s in pilot.app.view.store.dataset.rows if s["lineage"]["revisions"])
        pilot.app.open_sample(revised["id"])
        await wait_for(pilot, lambda: any(t.source for t in pilot.app.screen.query(LineageTree)))

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def test_call_detail(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)
        await pilot.press("4")
        screen = CallScreen(pilot.app.view.run_dir, 2)
        pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.call is not None)

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)
        await pilot.press("question_mark")

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def test_review(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)
        samples = [
            {
                "id": s["id"],
                "persona": s["persona"]["text"],
                "persona_id": s["persona"]["id"],
                "traits": s["traits"],
                "words": s["words"],
                "output": s["output"],
                "score": s["critic"]["score"],
                "feedback": s["critic"]["feedback"],
            }
            for s in pilot.app.view.store.dataset.rows[:2]
        ]
        pilot.app.push_screen(ReviewScreen(samples))

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def test_bars(snap_compare, watch_app, read, wait_for) -> None:
    async def run_before(pilot) -> None:
        await read(pilot)
        await pilot.app.push_screen(
            BarsScreen(novelty=0.85, min_score=None, spec_novelty=0.9, spec_min_score=3)
        )
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False

    assert snap_compare(watch_app, terminal_size=SIZE, run_before=run_before)


def _shown(widget) -> str:
    """The lines a widget shows now (as laid out: a row past its height is not shown)."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


class JointApp(App):
    """The joint grid alone, on a hand-made report section (issue 4's shape)."""

    def __init__(self, joint) -> None:
        super().__init__()
        self.joint = joint

    def compose(self) -> ComposeResult:
        yield JointGrid(id="with")
        yield JointGrid(id="without")

    def on_mount(self) -> None:
        self.query_one("#with", JointGrid).joint = self.joint


def _cell(va: str, vb: str, target: int, accepted: int, attempts: int) -> dict:
    rate = round(accepted / attempts, 3) if attempts else None
    return {
        "values": [va, vb],
        "target": target,
        "accepted": accepted,
        "attempts": attempts,
        "acceptance_rate": rate,
    }


JOINT = [
    {
        "traits": ["feature", "setting"],
        "cells": [
            _cell("dialogue", "forest", 2, 2, 2),
            _cell("dialogue", "sea", 2, 1, 3),
            _cell("moral", "forest", 2, 0, 6),
            _cell("moral", "sea", 2, 0, 0),
            _cell("twist", "forest", 0, 0, 0),
            _cell("twist", "sea", 1, 1, 1),
        ],
    },
    {
        "traits": ["feature", "tone"],
        "cells": [_cell("dialogue", "calm", 1, 1, 1), _cell("moral", "calm", 1, 0, 1)],
    },
]


def test_joint_grid_and_its_empty_state(snap_compare) -> None:
    assert snap_compare(JointApp(JOINT), terminal_size=(80, 20))
