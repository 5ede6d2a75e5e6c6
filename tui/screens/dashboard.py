"""The dashboard: coverage per trait value and the joint grid, the counters, what each
agent does now, and the live feed of accepted and rejected samples."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header

from personaloom.tui.screens.base import RunScreen
from personaloom.tui.view import RunView
from personaloom.tui.widgets.agents import AgentPanel
from personaloom.tui.widgets.counters import Counters
from personaloom.tui.widgets.coverage import CoverageTable
from personaloom.tui.widgets.feed import SampleFeed
from personaloom.tui.widgets.joint import JointGrid


class DashboardScreen(RunScreen):
    """Enter on a coverage row opens its samples; enter on a feed line opens the sample."""

    AUTO_FOCUS = "#feed"  # the newest outcome is highlighted, not a coverage row

    def __init__(self) -> None:
        super().__init__()
        self._feed_seen = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            with Vertical(id="left"):
                with Vertical(id="coverage-panel", classes="panel"):
                    yield CoverageTable(id="coverage")
                with VerticalScroll(id="joint-panel", classes="panel"):
                    yield JointGrid(id="joint")
            with Vertical(id="right"):
                with Vertical(id="counters-panel", classes="panel"):
                    yield Counters(id="counters")
                with Vertical(id="agents-panel", classes="panel"):
                    yield AgentPanel(id="agents")
        with Vertical(id="feed-panel", classes="panel"):
            yield SampleFeed(id="feed")
        yield Footer()

    def on_mount(self) -> None:
        titles = {
            "#coverage-panel": "Coverage per trait value (enter: its samples)",
            "#joint-panel": "Joint coverage",
            "#counters-panel": "Run",
            "#agents-panel": "Agents now",
            "#feed-panel": "Accepted and rejected, live (enter: open)",
        }
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self.query_one("#joint-panel").display = False  # until a report shows joint targets

    def show_view(self, view: RunView) -> None:
        self.query_one(CoverageTable).report = view.report
        joint = view.report.get("joint")
        self.query_one(JointGrid).joint = joint
        # A spec without joint targets gets the room for the feed, not an empty panel.
        self.query_one("#joint-panel").display = bool(joint)
        self.query_one(Counters).report = view.report

    def show_activity(self, _: None) -> None:
        app, now = self.loom, self.loom.clock()
        counters = self.query_one(Counters)
        counters.status = app.run_status()
        counters.pace = app.state.pace(now)
        counters.ray_workers = app.state.workers
        counters.bars = app.bars()
        agents = self.query_one(AgentPanel)
        agents.now = now
        agents.lines = app.state.agents()
        agents.note = self._note()
        agents.held = app.run_status() == "paused"
        items = app.state.feed_since(self._feed_seen)
        self._feed_seen = app.state.feed_total
        if items:
            self.query_one(SampleFeed).add_items(items)

    def _note(self) -> str:
        app = self.loom
        status = app.run_status()
        if status == "review":
            waiting = len(app.state.review_pending)
            return f"the graph waits for your review of {waiting} sample" + "s" * (waiting != 1)
        if status == "paused":
            return "paused: no new batch starts (p resumes)"
        if status == "stopping":
            return "stopping: drafts in flight finish, then the run checkpoints"
        if app.watching and status == "running" and app.state.last_event_ts:
            quiet = app.clock() - app.state.last_event_ts
            if quiet > 120:
                return f"no event for {quiet / 60:.0f} min: was the run killed?"
        return ""

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "coverage" and event.row_key.value:
            trait, _, value = event.row_key.value.partition("=")
            await self.loom.show_samples(trait=f"{trait}={value}")

    def on_sample_feed_open_sample(self, message: SampleFeed.OpenSample) -> None:
        self.loom.open_sample(message.sample_id)
