"""Every screen through Pilot, on a watched run: drill-downs, filters, details, replay, help,
and ``watch`` following a run another thread is writing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static, TextArea

from personaloom.runner import arun, run
from personaloom.traces import TraceStore
from personaloom.tui.app import PersonaloomApp
from personaloom.tui.screens.call import CallScreen
from personaloom.tui.screens.help import HelpScreen
from personaloom.tui.screens.personas import PersonasScreen
from personaloom.tui.screens.replay import ReplayScreen
from personaloom.tui.screens.sample import SampleScreen
from personaloom.tui.screens.samples import SamplesScreen
from personaloom.tui.screens.traces import TracesScreen
from personaloom.tui.view import source_text
from personaloom.tui.widgets.lineage import LineageTree

SIZE = (140, 40)


@pytest.fixture
def read(wait_for, finished_and_read):
    async def read(pilot) -> None:
        await wait_for(pilot, lambda: finished_and_read(pilot.app))
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#coverage").row_count > 0)

    return read


def _static(screen, selector: str) -> str:
    """What a widget shows, with runs of spaces collapsed (lines wrap by width)."""
    widget = screen.query_one(selector, Static)
    lines = (widget.render_line(y).text for y in range(widget.size.height))
    return " ".join(" ".join(lines).split())


def _tree_labels(tree) -> list[str]:
    labels, stack = [], [tree.root]
    while stack:
        node = stack.pop()
        labels.append(str(node.label))
        stack.extend(node.children)
    return labels


async def test_coverage_row_opens_its_samples_and_a_sample_its_lineage(
    finished_run: Path, read, wait_for
) -> None:
    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        coverage = app.screen.query_one("#coverage", DataTable)
        coverage.focus()
        coverage.move_cursor(row=1)  # feature=moral
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SamplesScreen))
        samples = app.screen
        table = samples.query_one("#samples", DataTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        shown = [table.get_row_at(i) for i in range(table.row_count)]
        assert all("feature=moral" in str(row[2]) for row in shown)
        assert any("rejected" in str(row[1]) for row in shown)  # moral fails the critic

        await pilot.press("enter")  # the first sample, whole
        await wait_for(pilot, lambda: isinstance(app.screen, SampleScreen))
        tree = app.screen.query_one(LineageTree)
        await wait_for(pilot, lambda: tree.source is not None)
        labels = _tree_labels(tree)
        assert any(label.startswith("source text corpus/") for label in labels)
        assert any("writer: first draft" in label for label in labels)
        assert "feature=moral" in _static(app.screen, "#sample-summary")
        await pilot.press("escape")
        assert isinstance(app.screen, SamplesScreen)


async def test_samples_filters_by_status_reason_and_text(finished_run: Path, read, wait_for):
    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        await pilot.press("3")
        screen = app.screen
        table = screen.query_one("#samples", DataTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        total = table.row_count
        assert total == app.view.report["accepted"] + app.view.report["rejected"]
        screen.query_one("#status").value = "rejected"
        await wait_for(pilot, lambda: table.row_count == app.view.report["rejected"])
        screen.query_one("#reason").value = "trait_mismatch"
        await pilot.pause(0.1)
        assert table.row_count == app.view.report["rejections"]["trait_mismatch"]
        screen.query_one("#status").clear()
        screen.query_one("#reason").clear()
        await wait_for(pilot, lambda: table.row_count == total)
        wanted = str(table.get_row_at(2)[0])
        screen.query_one("#text").focus()
        await pilot.press(*wanted)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_row_at(0)[0]) == wanted


async def test_feed_line_opens_the_sample(finished_run: Path, read, wait_for) -> None:
    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        feed = app.screen.query_one("#feed", DataTable)
        await wait_for(pilot, lambda: feed.row_count > 0)
        feed.focus()
        sample_id = str(feed.get_row_at(feed.cursor_row)[2])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SampleScreen))
        assert app.screen.sample_id == sample_id


async def test_personas_show_the_pool_tree_and_source_text(finished_run: Path, read, wait_for):
    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, PersonasScreen)
        pool = screen.query_one("#pool", DataTable)
        await wait_for(pilot, lambda: pool.row_count == app.view.report["personas"])
        related = next(p for p in app.view.store.personas.rows if p["parent_id"])
        pool.move_cursor(row=pool.get_row_index(related["id"]))
        await pilot.pause(0.1)
        detail = _static(screen, "#persona-detail")
        assert related["persona"][:40] in detail
        assert f"{related['id']} <- {related['parent_id']}" in detail  # the relation edge
        root = app.view.store.persona_by_id[app.view.store.lineage(related["id"])[-1]]
        assert f"source text {root['source_text_id']}" in detail
        text = source_text(app.view.spec, root["source_text_id"])
        assert text and text in " ".join(detail.split())
        tree = screen.query_one("#relations")
        labels = _tree_labels(tree)
        assert any(label.startswith("source corpus/") for label in labels)
        assert sum(p["id"] in " ".join(labels) for p in app.view.store.personas.rows) == len(
            app.view.store.personas.rows
        )


async def test_traces_filters_and_call_detail(finished_run: Path, read, wait_for) -> None:
    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        await pilot.press("4")
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        calls = screen.query_one("#calls", DataTable)
        await wait_for(pilot, lambda: calls.row_count == app.view.report["calls"])
        screen.query_one("#agent").value = "critic"
        await wait_for(pilot, lambda: calls.row_count < app.view.report["calls"])
        agents = {str(calls.get_row_at(i)[2]) for i in range(calls.row_count)}
        assert agents == {"critic"}
        assert "critic" in _static(screen, "#totals") and "writer" not in _static(screen, "#totals")
        screen.query_one("#slowest").value = "2"
        screen.query_one("#slowest").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: calls.row_count == 2)
        screen.query_one("#since").value = "yesterday-ish"
        screen.query_one("#since").focus()
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: "--since" in str(screen.query_one("#calls-panel").border_subtitle)
        )

        calls.focus()
        call_id = int(str(calls.get_row_at(0)[0]))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CallScreen))
        await wait_for(pilot, lambda: app.screen.call is not None)
        body = _static(app.screen, "#call-body")
        assert f"call {call_id}: critic" in body and "raw reply" in body


async def test_help_opens_and_closes(finished_run: Path, read) -> None:
    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_watch_is_read_only(finished_run: Path, read) -> None:
    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        for action in ("pause", "stop", "review", "bars"):
            assert app.check_action(action, ()) is False  # hidden from the footer
        await pilot.press("p", "s", "v", "b")
        assert app.control is None and app.screen.__class__.__name__ == "DashboardScreen"
        await pilot.press("q")
    assert app.return_value == 0


async def test_watch_follows_a_run_written_by_another_thread(
    make_spec, tmp_path: Path, wait_for
) -> None:
    spec = make_spec(
        traits={
            "feature": {"values": ["dialogue", "moral"], "target": 3},
            "setting": {"values": ["forest", "sea"], "target": 3},
        },
        personas={"max_uses": 3},
    )
    run_dir = tmp_path / "run"
    finished: list = []
    writer = threading.Thread(
        target=lambda: finished.append(run(spec, out=run_dir, notice=lambda text: None))
    )
    writer.start()
    try:
        while not (run_dir / "run.json").exists():
            writer.join(0.05)
        app = PersonaloomApp(watch=run_dir)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.view is not None)
            seen_running = app.run_status() == "running"
            await wait_for(pilot, lambda: app.state.status == "complete", timeout=60)
            await wait_for(pilot, lambda: app.view.meta.get("status") == "complete")
            report = finished[0].report
            assert app.view.report["accepted"] == report["accepted"]
            assert app.view.report["coverage"] == report["coverage"]
            outcomes = [i for i in app.state.feed if i.kind in ("accepted", "rejected")]
            assert len(outcomes) == report["accepted"] + report["rejected"]
        assert seen_running  # it really was followed while running
    finally:
        writer.join()


@pytest.mark.parametrize("latency", [0.0])
async def test_replay_a_call_with_an_edited_prompt(
    make_spec, tmp_path: Path, responder, wait_for
) -> None:
    responder.accept_rate = {"moral": 0.0}
    spec = make_spec(critic={"min_score": 3, "max_revisions": 0}, budget={"max_calls": 40})
    result = await arun(spec, out=tmp_path / "run", notice=lambda text: None)
    rejected = next(
        c
        for c in TraceStore(result.run_dir / "traces.sqlite", readonly=True).calls(
            "agent = 'critic'"
        )
        if '"has_feature": false' in (c["raw_reply"] or "")
    )
    app = PersonaloomApp(watch=result.run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.view is not None)
        app.push_screen(CallScreen(result.run_dir, rejected["id"]))
        await wait_for(pilot, lambda: isinstance(app.screen, CallScreen) and app.screen.call)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen))
        editor = app.screen.query_one("#prompt", TextArea)
        assert "does it have" in editor.text  # the critic's template, to edit
        editor.text = editor.text.replace("does it have", "is there")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not app.screen.running, timeout=30)
        shown = _static(app.screen, "#replay-result")
        assert "diff against the recorded reply" in shown
        assert '"has_feature": true' in shown.replace("-", "").replace("+", "")
    replays = TraceStore(result.run_dir / "traces.sqlite", readonly=True).calls(
        "replay_of = ?", [rejected["id"]]
    )
    assert replays and replays[0]["node"] == "replay"


async def test_joint_panel_shows_only_for_joint_targets(finished_run: Path, read) -> None:
    import dataclasses

    app = PersonaloomApp(watch=finished_run)
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        dashboard, panel = app.screen, app.screen.query_one("#joint-panel")
        assert panel.display and app.view.report["joint"]  # this spec has a joint target
        view = dataclasses.replace(app.view, report={**app.view.report, "joint": []})
        # Checked before the app runs again: in watch mode it re-reads the run every second
        # and would show the real view (with its joint targets) again.
        dashboard.show_view(view)
        assert not panel.display  # no empty panel: the feed gets the room
        dashboard.show_view(app.view)
        assert panel.display
