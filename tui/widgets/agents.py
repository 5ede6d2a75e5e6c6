"""What each agent is doing now: the drafts it works on and for how long, or its last step.

Built from node start and end events (the graph records both for every node), so it shows
the same thing for a supervised run and for a run watched from its trace store.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from personaloom.tui.state import AgentLine, format_eta

LABELS = {
    "planner": "planner",
    "personas": "miner/relater",
    "writer": "writer",
    "critic": "critic",
    "novelty": "novelty checker",
}


class AgentPanel(Static):
    """One line per agent. ``now`` is the dashboard's clock (fixed in tests)."""

    DEFAULT_CSS = "AgentPanel { height: auto; }"

    lines: reactive[tuple[AgentLine, ...]] = reactive(())
    """The fold's ``agents()``: one line each, so a change repaints without a new layout."""
    now: reactive[float] = reactive(0.0)
    """Current time, for 'busy for N s'."""
    note: reactive[str] = reactive("", layout=True)
    """Why nothing moves, when that is the case: paused, waiting for review."""
    held: reactive[bool] = reactive(False)
    """The run is paused: the planner waits in its node rather than working."""

    def render(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(no_wrap=True, width=15)
        grid.add_column(no_wrap=True, width=6)
        grid.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
        for line in self.lines:
            if line.busy and self.held and line.agent == "planner":
                state = Text("◌ held", style="yellow")
                what = Text("waits for resume", style="yellow")
            elif line.busy:
                samples = [s for s in line.busy if s != "-"]  # "-": a node run for no draft
                shown = ", ".join(samples[:3]) + (" …" if len(samples) > 3 else "")
                shown = shown or "working"
                took = ""
                if line.since is not None and self.now >= line.since:
                    took = f" for {format_eta(self.now - line.since)}"
                state = Text("● busy", style="green bold")
                what = Text(f"{shown}{took}")
            else:
                state = Text("○ idle", style="dim")
                what = Text(f"last: {line.last}" if line.last else "", style="dim")
            grid.add_row(Text(LABELS.get(line.agent, line.agent), style="bold"), state, what)
        if self.note:
            grid.add_row(Text(""), Text(""), Text(self.note, style="yellow bold"))
        return grid
