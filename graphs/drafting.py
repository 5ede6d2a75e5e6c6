"""The per-draft subgraph: write -> critique -> (revise | reject | check novelty) -> finish.

One instance runs per planner assignment (sent with ``Send``), concurrently up to the
spec's ``concurrency``. Revisions for critic feedback and for near-duplicates share one
bound, ``critic.max_revisions``, so a draft costs at most ``2 * (max_revisions + 1)`` calls
plus one repair each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container, Mapping
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from personaloom import records
from personaloom.agents import critic, novelty, writer
from personaloom.agents.models import RejectReason
from personaloom.graphs.context import Context
from personaloom.graphs.state import DraftInput, DraftOutcome, DraftOutput, DraftState, DraftTask
from personaloom.graphs.tracing import traced
from personaloom.graphs.window import OpeningsSeen
from personaloom.llm import BudgetExhausted, LLMFailure
from personaloom.vectors import SAMPLES


def _after_failure(state: DraftState, reason: str, feedback: str, max_revisions: int) -> dict:
    """Revise while revisions remain, otherwise reject with ``reason``."""
    if state.get("revision", 0) < max_revisions:
        return {"verdict": "revise", "reason": reason, "feedback": feedback, "unconfirmed": []}
    return {"verdict": "reject", "reason": reason, "details": feedback, "unconfirmed": []}


def _contaminated(ctx: Context, state: DraftState, found: novelty.Contamination) -> dict:
    """Revise or reject a draft that resembles an avoided item, keeping the evidence (the
    ``contamination`` event counts every catch for the report, revised or rejected)."""
    task = state["task"]
    ctx.events.record(
        "contamination",
        sample_id=task.draft_id,
        persona_id=task.persona_id,
        revision=state.get("revision", 0),
        **found.evidence(),
    )
    verdict = _after_failure(
        state, RejectReason.CONTAMINATED, found.feedback(), ctx.spec.critic.max_revisions
    )
    return {**verdict, "contamination": found.evidence()}


def _hidden(ctx: Context, task: DraftTask) -> Container[str]:
    """Samples this draft must not see: the streaming engine's drafts see those of drafts
    before their horizon only (graphs/window.py), so that timing changes nothing."""
    if task.horizon is None or ctx.window is None:
        return ()
    return ctx.window.hidden(task.horizon)


def _openings(ctx: Context, task: DraftTask) -> Mapping[str, int]:
    """Accepted samples' openings, as far as this draft may see them."""
    counts = critic.opening_counts(ctx)
    if task.horizon is None or ctx.window is None:
        return counts
    return OpeningsSeen(counts, ctx.window.hidden_openings(task.horizon))


async def write(state: DraftState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    task = state["task"]
    revising = state.get("verdict") == "revise"
    if not revising and ctx.store.written(task.draft_id):
        # A batch resumed after a crash whose commit had already written this draft: run
        # again, its checks would now see its own stored copy (a near-duplicate of itself)
        # and pay for revisions of a sample that is already in the dataset.
        return {"written": True}
    revision = state.get("revision", 0) + (1 if revising else 0)
    if task.persona_id not in ctx.store.persona_by_id:
        # Assigned before a kill that tore personas.jsonl's last line, which was cut off:
        # nothing of this draft was written, so it is planned again with a persona we have.
        return {"aborted": True, "revision": revision, "details": "persona_lost"}
    persona = ctx.store.persona_by_id[task.persona_id]["persona"]
    try:
        record = await writer.write(
            ctx,
            task,
            persona,
            revision=revision,
            previous=state.get("record") if revising else None,
            feedback=state.get("feedback") if revising else None,
            neighbour=state.get("neighbour") if revising else None,
        )
    except BudgetExhausted:
        return {"aborted": True, "revision": revision}
    except LLMFailure as exc:
        return {"record": None, "verdict": "reject", "reason": exc.reason, "details": exc.details}
    return {"record": record, "revision": revision, "neighbour": None, "verdict": None}


async def critique(state: DraftState, runtime: Runtime[Context]) -> dict:
    update = await _critique(state, runtime)
    if not update.get("aborted"):
        task = state["task"]
        runtime.context.events.record(
            "verdict",
            sample_id=task.draft_id,
            persona_id=task.persona_id,
            revision=state.get("revision", 0),
            verdict=update["verdict"],
            reason=None if update["verdict"] == "accept" else str(update.get("reason")),
            score=update.get("score"),
            feedback=update.get("feedback") or update.get("details"),
        )
    return update


async def _critique(state: DraftState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    task, record = state["task"], state["record"]
    assert record is not None, "critique runs only after write produced a record"
    limit = ctx.spec.critic.max_revisions
    # First, before any check that could hide it: a copied eval item is the thing to report.
    if found := novelty.shared_words(ctx, records.text_parts(ctx.spec, record)):
        return _contaminated(ctx, state, found)
    finding = critic.deterministic_checks(ctx.spec, task, record) or critic.diversity_gate(
        ctx.spec, record, _openings(ctx, task)
    )
    if finding:
        return _after_failure(state, finding.reason, finding.feedback, limit)
    # The novelty check needs the draft's embedding: compute it while the critic's call is
    # in flight rather than after it (wasted only on drafts the critic turns down).
    embedding = asyncio.ensure_future(novelty.embed(ctx, records.text_of(ctx.spec, record)))
    accepted = False
    try:
        review = await critic.review(ctx, task, record, state.get("revision", 0))
        finding = critic.judge(task, review, ctx.min_score)
        accepted = finding is None
    except BudgetExhausted:
        return {"aborted": True}
    except LLMFailure as exc:
        return {"verdict": "reject", "reason": exc.reason, "details": exc.details}
    finally:
        if not accepted:
            embedding.cancel()
    update = {"score": review.score, "feedback": review.feedback}
    if finding:
        verdict = _after_failure(state, finding.reason, finding.feedback, limit)
        return {**update, **verdict, "unconfirmed": list(finding.traits)}
    return {**update, "verdict": "accept", "unconfirmed": [], "embedding": await embedding}


async def check_novelty(state: DraftState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    vector = state["embedding"]  # computed by critique, which just accepted this draft
    assert vector is not None, "check_novelty runs after critique accepted (with an embedding)"
    if avoided := await novelty.similar_avoided(ctx, vector, ctx.novelty_threshold):
        return {"embedding": vector, **_contaminated(ctx, state, avoided)}
    neighbour = await novelty.nearest(ctx, SAMPLES, vector, hide=_hidden(ctx, state["task"]))
    update: dict[str, Any] = {
        "embedding": vector,
        "neighbour_id": neighbour.id if neighbour else None,
        "similarity": round(neighbour.similarity, 4) if neighbour else None,
    }
    reason, feedback, found = RejectReason.NEAR_DUPLICATE, "", neighbour
    memory = ctx.memory.name if ctx.memory is not None else None
    if novelty.is_duplicate(neighbour, ctx.novelty_threshold):
        duplicate = True
        feedback = f"too similar ({neighbour.similarity:.2f}) to sample {neighbour.id}"
    elif ctx.memory is not None and (seen := await novelty.seen_before(ctx, vector)):
        duplicate, reason, found = True, RejectReason.SEEN_BEFORE, seen
        feedback = (
            f"too similar ({seen.similarity:.2f}) to sample {seen.id} of an earlier run, "
            f"kept in novelty memory {memory}"
        )
        update["neighbour_id"], update["similarity"] = seen.id, round(seen.similarity, 4)
    else:
        duplicate = False
    ctx.events.record(
        "novelty",
        sample_id=state["task"].draft_id,
        persona_id=state["task"].persona_id,
        neighbour_id=update["neighbour_id"],
        similarity=update["similarity"],
        threshold=ctx.novelty_threshold,
        duplicate=duplicate,
        **({"memory": memory} if reason == RejectReason.SEEN_BEFORE else {}),
    )
    if duplicate and found is not None:
        verdict = _after_failure(state, reason, feedback, ctx.spec.critic.max_revisions)
        return {**update, **verdict, "neighbour": found.document}
    return update


async def finish(state: DraftState) -> dict:
    if state.get("written"):
        status = "written"
    elif state.get("aborted"):
        status = "aborted"
    else:
        status = "accepted" if state.get("verdict") == "accept" else "rejected"
    reason = None if status == "accepted" else state.get("reason")
    outcome = DraftOutcome(
        task=state["task"],
        status=status,
        record=state.get("record"),
        reason=reason,
        details=state.get("details") or "",
        score=state.get("score"),
        feedback=state.get("feedback"),
        revisions=state.get("revision", 0),
        unconfirmed=state.get("unconfirmed") or [],
        embedding=state.get("embedding"),
        neighbour_id=state.get("neighbour_id"),
        similarity=state.get("similarity"),
        contamination=state.get("contamination") if reason == RejectReason.CONTAMINATED else None,
    )
    return {"outcomes": [outcome]}


def after_write(state: DraftState) -> Literal["critique", "finish"]:
    done = state.get("aborted") or state.get("written") or state.get("record") is None
    return "finish" if done else "critique"


def after_critique(state: DraftState) -> Literal["write", "check_novelty", "finish"]:
    if state.get("aborted"):
        return "finish"
    return {"accept": "check_novelty", "revise": "write"}.get(state["verdict"], "finish")  # type: ignore[return-value]


def after_novelty(state: DraftState) -> Literal["write", "finish"]:
    return "write" if state.get("verdict") == "revise" else "finish"


def build_draft_graph() -> StateGraph[DraftState, Context, DraftInput, DraftOutput]:
    graph = StateGraph(
        DraftState, context_schema=Context, input_schema=DraftInput, output_schema=DraftOutput
    )
    graph.add_node("write", traced("write")(write))
    graph.add_node("critique", traced("critique")(critique))
    graph.add_node("check_novelty", traced("check_novelty")(check_novelty))
    graph.add_node("finish", traced("finish")(finish))
    graph.add_edge(START, "write")
    graph.add_conditional_edges("write", after_write)
    graph.add_conditional_edges("critique", after_critique)
    graph.add_conditional_edges("check_novelty", after_novelty)
    graph.add_edge("finish", END)
    return graph
