"""The generation graph: plan -> (mine_personas | draft x N) -> commit -> plan ... -> END.

``plan`` decides whether the run is over (targets met, budget used up, stalled) and otherwise
assigns the next batch; ``draft`` is the per-draft subgraph, fanned out with ``Send``;
``commit`` writes the batch's outcomes in draft-id order, so results do not depend on which
concurrent draft finished first, and a resumed commit skips what it already wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send, interrupt

from personaloom import records
from personaloom.agents import critic
from personaloom.agents.models import RejectReason
from personaloom.embeddings import embed_async
from personaloom.graphs.context import Context
from personaloom.graphs.drafting import build_draft_graph
from personaloom.graphs.personas import mine_personas
from personaloom.graphs.planner import Planner
from personaloom.graphs.state import DraftOutcome, DraftTask, GenerationState
from personaloom.graphs.tracing import traced
from personaloom.vectors import SAMPLES, Neighbour

STALL_BACKSTOP = 5  # x stall_rounds, while some open target still has a deficit


def _planner(ctx: Context) -> Planner:
    """The run's planner, which the runner makes before the graph runs (``wire``)."""
    if ctx.planner is None:
        raise RuntimeError("the context has no planner: graphs.wiring.wire(ctx) first")
    return ctx.planner


async def plan(state: GenerationState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    await ctx.control.wait_while_paused()
    if ctx.control.stopping:
        return {"status": "stopped", "stop_reason": "stopped by the user", "batch": []}
    planner = _planner(ctx)
    remaining = planner.remaining()
    if remaining == 0:
        return _finished(planner)
    if limit_reached := ctx.llm.budget.exhausted():
        return {"status": "budget", "stop_reason": limit_reached, "batch": []}
    idle = state.get("idle_rounds", 0)
    # Targets that keep failing are set aside and given up by the ledger; this backstop is
    # for runs whose failing drafts count for no open target (a `total` with no traits).
    limit = ctx.stall_rounds * (1 if not planner.open_deficit() else STALL_BACKSTOP)
    if idle >= limit:
        reason = f"{limit} rounds in a row accepted nothing"
        return {"status": "stalled", "stop_reason": reason, "batch": []}
    size = min(ctx.spec.concurrency, remaining)
    exhausted = state.get("pool_exhausted", False)
    available = planner.available_personas(exhausted)
    wanted = planner.wanted_labels(available) if planner.persona_traits else {}
    if (len(available) < size or wanted) and not exhausted:
        return {"need_personas": max(1, size - len(available)), "wanted": wanted, "batch": []}
    if wanted:  # nothing left to mine: no persona will ever carry these values
        planner.mark_unreachable(list(ctx.store.persona_by_id))
        remaining = planner.remaining()
        if remaining == 0:
            return _finished(planner)
        size = min(size, remaining)
    if not available:
        return {"status": "stalled", "stop_reason": "no persona could be mined", "batch": []}
    round_ = max(state.get("round", 0), planner.first_free_round)
    batch = planner.assign(round_, size, available)
    for task in batch:
        record_assignment(ctx, task)
    emit_round(ctx, round_, len(batch), remaining)
    return {"batch": batch, "need_personas": 0, "round": round_}


def record_assignment(ctx: Context, task: DraftTask) -> None:
    ctx.events.record(
        "assignment",
        sample_id=task.draft_id,
        persona_id=task.persona_id,
        traits=task.traits,
        words=task.words,
    )


def emit_round(ctx: Context, round_: int, drafts: int, remaining: int) -> None:
    """The ``batch`` event: the dashboard's planner line and the run's spend so far."""
    budget = ctx.llm.budget
    ctx.events.emit(
        "batch",
        round=round_,
        drafts=drafts,
        remaining=remaining,
        calls=budget.calls,
        cost=round(budget.cost, 6),
    )


def _finished(planner: Planner) -> dict[str, Any]:
    """Every open target is met: complete, or stalled when some were given up."""
    blocked = planner.blocked()
    if not blocked:
        return {"status": "complete", "stop_reason": None, "batch": []}
    detail = "; ".join(
        f"{b['trait']}={b['value']} ({b['accepted']}/{b['target']} after {b['attempts']} "
        f"drafts, mostly {b['reason']})"
        for b in blocked
    )
    return {"status": "stalled", "stop_reason": f"targets given up: {detail}", "batch": []}


def route(state: GenerationState) -> str | list[Send]:
    if state.get("status", "running") != "running":
        return END
    if state.get("need_personas"):
        return "mine_personas"
    return [Send("draft", {"task": task}) for task in state["batch"]]


async def commit(state: GenerationState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    outcomes = sorted(state.get("outcomes") or [], key=lambda o: o.task.draft_id)
    if ctx.control.review:
        _review(ctx, outcomes)  # before any write: the node re-runs from here on resume
    accepted = 0
    for outcome in outcomes:
        _, ok = await commit_outcome(ctx, outcome)
        accepted += ok
    idle = 0 if accepted else state.get("idle_rounds", 0) + 1
    return {"round": state.get("round", 0) + 1, "outcomes": None, "idle_rounds": idle}


# The nearest committed sample a draft's own novelty check could not see (see ``_accept``).
Unseen = Callable[[list[float]], Neighbour | None]


async def commit_outcome(
    ctx: Context, outcome: DraftOutcome, unseen: Unseen | None = None
) -> tuple[dict[str, Any] | None, bool]:
    """Write one finished draft: (its dataset or rejected.jsonl row, whether accepted); no row
    for an aborted draft. A draft written before a crash is not written again."""
    task = outcome.task
    if outcome.status == "aborted":
        reason = outcome.details or "budget"
        ctx.events.emit("draft_aborted", sample_id=task.draft_id, reason=reason)
        return None, False
    if outcome.status == "written" or ctx.store.written(task.draft_id):
        accepted = task.draft_id in ctx.store.dataset.ids
        rows = ctx.store.dataset.rows if accepted else ctx.store.rejected.rows
        return next(r for r in reversed(rows) if r["id"] == task.draft_id), accepted
    if outcome.status == "accepted" and (sample := await _accept(ctx, outcome, unseen)):
        return sample, True
    return _reject(ctx, outcome), False


def _review(ctx: Context, outcomes: list[DraftOutcome]) -> None:
    """Ask the person reviewing (a LangGraph interrupt) about this batch's accepted drafts."""
    if samples := review_samples(ctx, outcomes):
        apply_review(outcomes, interrupt({"kind": "review", "samples": samples})["rejected"])


def review_samples(ctx: Context, outcomes: list[DraftOutcome]) -> list[dict[str, Any]]:
    """The accepted, not yet written drafts among ``outcomes``, as the reviewer sees them."""
    return [
        {
            "id": o.task.draft_id,
            "persona": ctx.store.persona_by_id[o.task.persona_id]["persona"],
            "persona_id": o.task.persona_id,
            "traits": o.task.traits,
            "words": o.task.words,
            "output": o.record,
            "score": o.score,
            "feedback": o.feedback,
        }
        for o in outcomes
        if o.status == "accepted" and o.task.draft_id not in ctx.store.dataset.ids
    ]


def apply_review(outcomes: list[DraftOutcome], rejected: list[str]) -> None:
    """Turn the drafts the reviewer rejected into ``human_rejected`` rejections."""
    for outcome in outcomes:
        if outcome.status == "accepted" and outcome.task.draft_id in rejected:
            outcome.status, outcome.reason = "rejected", RejectReason.HUMAN_REJECTED
            outcome.details = "rejected in review"


async def _accept(
    ctx: Context, outcome: DraftOutcome, unseen: Unseen | None = None
) -> dict[str, Any] | None:
    """Write an accepted draft, unless a draft committed before it is too close (the sample
    written, or None with the outcome turned into a rejection).

    The draft's own novelty check compared this very embedding with every sample it could
    see and found none too close, so only the samples it could not see can be: ``unseen``
    (the streaming engine's, those its window hid) gives the nearest of those, an exact
    comparison with a few vectors instead of a second query of the whole store. Without it
    (the batch engine), or without the checked embedding, the whole store is asked."""
    task = outcome.task
    record = outcome.record or {}
    vector = outcome.embedding
    if vector is not None and unseen is not None:
        neighbour = unseen(vector)
    else:
        if vector is None:
            text = records.text_of(ctx.spec, record)
            vector = outcome.embedding = (await embed_async(ctx.embedder, [text]))[0]
        neighbour = await asyncio.to_thread(
            ctx.index.nearest, SAMPLES, vector, exclude=task.draft_id
        )
    if neighbour and neighbour.similarity >= ctx.novelty_threshold:
        outcome.status, outcome.reason = "rejected", RejectReason.NEAR_DUPLICATE
        outcome.details = f"too similar ({neighbour.similarity:.2f}) to sample {neighbour.id}"
        outcome.neighbour_id, outcome.similarity = neighbour.id, round(neighbour.similarity, 4)
        return None
    gate = critic.diversity_gate(ctx.spec, record, critic.opening_counts(ctx))
    if gate:  # a draft committed before it took the last place for this opening
        outcome.status, outcome.reason, outcome.details = "rejected", gate.reason, gate.feedback
        return None
    persona = ctx.store.persona_by_id[task.persona_id]
    sample = {
        "id": task.draft_id,
        "output": record,
        "persona": {"id": persona["id"], "text": persona["persona"]},
        "traits": task.traits,
        "words": task.words,
        "critic": {"score": outcome.score, "feedback": outcome.feedback},
        "novelty": {"neighbour_id": outcome.neighbour_id, "similarity": outcome.similarity},
        "lineage": {
            "persona_ids": ctx.store.lineage(task.persona_id),
            "source_text_id": ctx.store.source_text_id(task.persona_id),
            "relation": persona.get("relation"),
            "revisions": outcome.revisions,
            "round": task.round,
            **({"pool": pool} if (pool := ctx.store.pool_row(task.persona_id)) else {}),
        },
    }
    ctx.index.add(SAMPLES, task.draft_id, vector, records.text_of(ctx.spec, record))
    if ctx.memory is not None:
        ctx.memory.remember(task.draft_id, vector, records.text_of(ctx.spec, record))
    if ctx.store.add_sample(sample):
        _observe(ctx, sample, accepted=True)
        critic.opening_counts(ctx)[records.opening(ctx.spec, record)] += 1
    ctx.events.emit(
        "sample_accepted",
        sample_id=task.draft_id,
        persona_id=task.persona_id,
        traits=task.traits,
        score=outcome.score,
        accepted=ctx.store.accepted,
        remaining=_planner(ctx).remaining(),
    )
    return sample


def _reject(ctx: Context, outcome: DraftOutcome) -> dict[str, Any]:
    task = outcome.task
    reason = outcome.reason or RejectReason.LLM_ERROR
    row = {
        "id": task.draft_id,
        "reason": str(reason),
        "details": outcome.details,
        "draft": outcome.record,
        "persona_id": task.persona_id,
        "traits": task.traits,
        "words": task.words,
        "critic": {"score": outcome.score, "feedback": outcome.feedback},
        "novelty": {"neighbour_id": outcome.neighbour_id, "similarity": outcome.similarity},
        "revisions": outcome.revisions,
        **({"unconfirmed": outcome.unconfirmed} if outcome.unconfirmed else {}),
        **({"contamination": outcome.contamination} if outcome.contamination else {}),
    }
    if not ctx.store.add_rejection(row):
        return row  # a re-run commit after a crash: already written and reported
    _observe(ctx, row, accepted=False)
    ctx.events.emit(
        "sample_rejected",
        sample_id=task.draft_id,
        persona_id=task.persona_id,
        traits=task.traits,
        reason=str(reason),
        details=outcome.details,
    )
    return row


def _observe(ctx: Context, row: dict[str, Any], *, accepted: bool) -> None:
    """Keep the planner's ledger in step with the store; report cells that stagnate."""
    ledger = _planner(ctx).ledger
    for cell in ledger.observe(row, accepted):
        trait, value = ledger.name(cell)
        ctx.events.emit(
            "stagnant",
            trait=trait,
            value=value,
            attempts=ledger.attempts[cell],
            reason=ledger.dominant_reason(cell),
            given_up=ledger.given_up(cell),
        )


def build_graph() -> StateGraph[GenerationState, Context, GenerationState, GenerationState]:
    """The generation ``StateGraph``; compile it with the checkpointer you want."""
    graph = StateGraph(GenerationState, context_schema=Context)
    graph.add_node("plan", traced("plan")(plan))
    graph.add_node("mine_personas", traced("mine_personas")(mine_personas))
    # No checkpoints inside a draft (they were most of a sample's SQLite work): the parent
    # graph saves each finished draft's outcome, and a draft cut off mid-way is redone from
    # its start on resume, its calls answered by the reply cache.
    graph.add_node("draft", build_draft_graph().compile(checkpointer=False))
    graph.add_node("commit", traced("commit")(commit))
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", route, ["mine_personas", "draft", END])
    graph.add_edge("mine_personas", "plan")
    graph.add_edge("draft", "commit")
    graph.add_edge("commit", "plan")
    return graph
