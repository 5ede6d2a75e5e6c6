"""The help screen: what each screen shows, every key, and what the colours mean."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# personaloom dashboard

**Screens** (keys `1` to `4`, or click the footer)

| key | screen | what it shows |
|---|---|---|
| `1` | Dashboard | coverage per trait value and per pair of values, counters, the agents now, the live feed |
| `2` | Personas | the pool, its relation tree, and the source text each persona came from |
| `3` | Samples | accepted samples and rejected drafts; filter by status, trait value, reason or text |
| `4` | Traces | every LLM call, with the filters of `personaloom traces`; totals per agent |

`enter` (or a click) opens what is under the cursor: a coverage row opens its samples, a
feed line or a sample opens its lineage, a call opens it whole. In a call, `e` edits its
prompt template and `ctrl+r` replays it; `escape` goes back.

**Controls** (supervised runs: `personaloom tui`)

| key | control |
|---|---|
| `p` | pause, or resume: no new batch starts, drafts in flight finish |
| `s` | stop gracefully: drafts in flight finish and are committed, the run checkpoints; continue it with `personaloom tui --resume RUN_DIR` |
| `v` | review mode on or off: approve (`a`) or reject (`x`) each sample the critic accepted before it counts (`A` approves the rest of the batch) |
| `b` | bars: the novelty threshold and the critic's minimum score for drafts still to come |
| `q`, `ctrl+c` | quit; a run still going is cut short and stays resumable |

`personaloom watch RUN_DIR` follows a run started elsewhere, read-only: the controls are hidden.

**Colours** (per trait value and per joint cell): green, the target is met; yellow,
filling; red, in trouble: set aside or given up by the planner (the most common rejection
reason says why), or stuck (at least 5 drafts, under 20% accepted); grey, no draft yet, or no
target.

The rate is accepted samples per minute over the last five minutes; the time left assumes
it holds.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,f1", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)
