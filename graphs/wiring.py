"""``wire(ctx)``: the run's per-run objects, made once before the graph runs.

The planner (its ledger read from the run directory), the openings of the accepted samples
and the persona gate are made here, by the runner, rather
than on first use inside a node: a node then never has to know whether it is the first to
run in this session (a resumed commit, say), and tests can hand a node a context of fakes.
"""

from __future__ import annotations

from collections import Counter

from personaloom.graphs.context import Context
from personaloom.graphs.personas import make_persona_gate
from personaloom.graphs.planner import Planner
from personaloom.records import opening


def wire(ctx: Context) -> Context:
    """Give ``ctx`` its planner, opening counts and persona gate (blocking: reads the run)."""
    ctx.planner = Planner(ctx.spec, ctx.store, ctx.vocabulary)
    ctx.openings = Counter(opening(ctx.spec, s["output"]) for s in ctx.store.dataset.rows)
    ctx.persona_gate = make_persona_gate(ctx.templates, ctx.embedder)
    return ctx
