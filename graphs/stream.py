"""The streaming engine: stream -> (mine_personas -> stream ...) -> END, no batch barrier.

``stream`` keeps up to ``concurrency`` drafts in flight: a new draft starts as soon as one
finishes, and each finished draft is committed as soon as every draft numbered before it is
(in draft order, so results do not depend on which draft finished first). Plans come from
the reorder window (graphs/window.py): draft ``k`` is planned from the outcomes of drafts
below ``k - 4 x concurrency``, so timing never changes what is planned or written.

The drafts run the same per-draft subgraph as the batch engine (graphs/drafting.py). When
the pool needs personas, ``stream`` returns to the graph, which runs ``mine_personas`` (and
checkpoints its cursors) while the drafts in flight go on, then comes back. The run's truth
is the run directory: a resumed run plans again from dataset.jsonl and rejected.jsonl, the
drafts that were in flight under the same numbers (the reply cache answers their calls).
Review mode asks the run's reviewer before writing accepted drafts, without an interrupt.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from personaloom import records
from personaloom.graphs.context import Context
from personaloom.graphs.drafting import build_draft_graph
from personaloom.graphs.generation import (
    STALL_BACKSTOP,
    _finished,
    _planner,
    apply_review,
    commit_outcome,
    emit_round,
    record_assignment,
    review_samples,
)
from personaloom.graphs.personas import mine_personas
from personaloom.graphs.state import DraftOutcome, DraftTask, GenerationState
from personaloom.graphs.tracing import traced
from personaloom.graphs.window import HiddenFrom, StreamPlanner
from personaloom.vectors import SAMPLES, Neighbour, nearest_among

# When the pool runs short, mine for this many rounds of drafts, not one: every visit to
# mine_personas stops dispatch for a round trip or two, and at a 200 ms endpoint mining one
# round's worth at a time spent 29% of a concurrency-16 run there (56% of the ideal rate,
# 67% with 3; 8 over-mined for nothing).
PERSONA_LOOKAHEAD = 3


class Dispatcher:
    """Drafts in flight, finished drafts waiting for their turn, and the committed edge."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.concurrency = ctx.spec.concurrency
        self.plans = StreamPlanner(ctx.spec, ctx.store, ctx.vocabulary)
        self.next_seq = self.plans.next_seq  # the next draft to plan
        self.next_commit = self.next_seq  # every draft below this is committed
        self.running: dict[int, asyncio.Task[None]] = {}
        self.finished: dict[int, DraftOutcome] = {}
        self.skipped: set[int] = set()
        # Accepted this session, from the window's edge on: seq -> its sample's id, opening,
        # embedding and text (the embedding None for a draft written before a crash).
        self.recent: dict[int, tuple[str, str, list[float] | None, str]] = {}
        self.prior = frozenset(ctx.store.dataset.ids)  # accepted before this session: all seen
        self._commit_lock = asyncio.Lock()
        self._drafts = build_draft_graph().compile(checkpointer=False)
        self._emitted_round = -1

    # -- what a draft may see (its horizon: drafts below it) -----------------------------

    def hidden(self, horizon: int) -> HiddenFrom:
        return HiddenFrom(self.prior, horizon, self.concurrency)

    def hidden_openings(self, horizon: int) -> Counter[str]:
        return Counter(start for seq, (_, start, *_) in self.recent.items() if seq >= horizon)

    def unseen(self, task: DraftTask, vector: list[float]) -> Neighbour | None:
        """The nearest sample committed since ``task``'s novelty check that the check could
        not see (the samples ``hidden`` hid from it): the only ones left to compare with."""
        assert task.horizon is not None
        hidden = self.hidden(task.horizon)
        rows = {
            id_: (embedding, text)
            for seq, (id_, _, embedding, text) in self.recent.items()
            if seq >= task.horizon and embedding is not None and id_ in hidden
        }
        return nearest_among(rows, vector, lambda id_: id_ == task.draft_id)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, state: GenerationState) -> dict[str, Any]:
        """Dispatch until the run ends (drained, returns its status) or needs personas."""
        ctx = self.ctx
        while True:
            await ctx.control.wait_while_paused()
            if ctx.control.stopping:
                return await self._end("stopped", "stopped by the user")
            if limit := ctx.llm.budget.exhausted():
                return await self._end("budget", limit)
            horizon = self.next_seq - self.plans.window
            if len(self.running) >= self.concurrency or self.next_commit < horizon:
                await self._wait()
                continue
            self.plans.advance(horizon)
            step = self._step(state)
            if step is not None:
                if step.get("need_personas"):
                    return step
                return await self._end(step["status"], step["stop_reason"])

    def _step(self, state: GenerationState) -> dict[str, Any] | None:
        """Plan draft ``next_seq`` (start it, or skip its number), or say why not."""
        ctx, plans = self.ctx, self.plans
        planner = plans.planner
        limit = ctx.stall_rounds * (1 if not _planner(ctx).open_deficit() else STALL_BACKSTOP)
        if plans.idle >= limit * self.concurrency:
            return {
                "status": "stalled",
                "stop_reason": f"{plans.idle} drafts in a row accepted nothing",
            }
        remaining = plans.remaining()
        if remaining == 0:
            if not plans.in_window():
                return _finished(planner)
            self._skip()  # everything missing is reserved: move the window on
            return None
        size = min(self.concurrency, remaining)
        exhausted = state.get("pool_exhausted", False)
        available = planner.available_personas(exhausted)
        wanted = planner.wanted_labels(available) if planner.persona_traits else {}
        if (len(available) < size or wanted) and not exhausted:
            return {
                "need_personas": max(1, PERSONA_LOOKAHEAD * size - len(available)),
                "wanted": wanted,
            }
        if wanted:  # nothing left to mine: no persona will ever carry these values
            for p in (planner, _planner(ctx)):
                p.mark_unreachable(list(ctx.store.persona_by_id))
            return None
        if not available:
            if plans.in_window():
                self._skip()
                return None
            return {"status": "stalled", "stop_reason": "no persona could be mined"}
        self._start(plans.plan(self.next_seq, available))
        return None

    def _skip(self) -> None:
        self.plans.skip(self.next_seq)
        self.skipped.add(self.next_seq)
        self.next_seq += 1
        self._commit_skipped()

    def _start(self, task: DraftTask) -> None:
        ctx, seq = self.ctx, self.next_seq
        self.next_seq += 1
        record_assignment(ctx, task)
        if task.round != self._emitted_round:  # the dashboard's planner line, per round
            self._emitted_round = task.round
            emit_round(ctx, task.round, self.concurrency, _planner(ctx).remaining())
        self.running[seq] = asyncio.create_task(self._draft(seq, task), name=task.draft_id)

    async def _draft(self, seq: int, task: DraftTask) -> None:
        workers = self.ctx.workers
        if workers is None:
            result = await self._drafts.ainvoke({"task": task}, context=self.ctx)
            self.finished[seq] = result["outcomes"][0]
        elif self.ctx.store.written(task.draft_id):  # resumed: its commit was written
            self.finished[seq] = DraftOutcome(task=task, status="written")
        else:
            self.finished[seq] = await workers.draft(task)
        await self._commit_ready()

    async def _wait(self) -> None:
        """Until a draft in flight ends (its commit done); its error is raised here."""
        if not self.running:
            return
        done, _ = await asyncio.wait(self.running.values(), return_when=asyncio.FIRST_COMPLETED)
        for seq in [s for s, t in self.running.items() if t in done]:
            task = self.running.pop(seq)
            if task.exception() is not None:
                await self.aclose()
                raise task.exception()  # type: ignore[misc]

    async def aclose(self) -> None:
        """Cancel the drafts still in flight (a draft failed, or the graph ended elsewhere,
        in mine_personas say, with an error) and collect what they raised."""
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        self.running.clear()

    async def _end(self, status: str, reason: str | None) -> dict[str, Any]:
        """Let the drafts in flight finish and be committed, then end with ``status``."""
        while self.running:
            await self._wait()
        self.ctx.index.flush()
        return {"status": status, "stop_reason": reason, "need_personas": 0}

    # -- commits, in draft order -------------------------------------------------------------

    def _commit_skipped(self) -> None:
        while self.next_commit in self.skipped:
            self.skipped.discard(self.next_commit)
            self.next_commit += 1

    async def _commit_ready(self) -> None:
        async with self._commit_lock:
            while True:
                self._commit_skipped()
                ready = []
                seq = self.next_commit
                while seq in self.finished:
                    ready.append(seq)
                    seq += 1
                    while seq in self.skipped:
                        seq += 1
                if not ready:
                    return
                outcomes = [self.finished[s] for s in ready]
                await self._review(outcomes)
                for seq, outcome in zip(ready, outcomes, strict=True):
                    await self._commit(seq, outcome)

    async def _commit(self, seq: int, outcome: DraftOutcome) -> None:
        horizon = outcome.task.horizon is not None
        unseen = functools.partial(self.unseen, outcome.task) if horizon else None
        row, accepted = await commit_outcome(self.ctx, outcome, unseen)
        self.plans.record(seq, row, accepted)
        if accepted and row is not None:
            start = records.opening(self.ctx.spec, row["output"])
            text = records.text_of(self.ctx.spec, row["output"])
            self.recent[seq] = (row["id"], start, outcome.embedding, text)
            if self.ctx.workers is not None:  # the workers' pre-checks see it from now on
                self.ctx.workers.committed(seq, row["id"], start)
                await asyncio.to_thread(self.ctx.index.flush, SAMPLES)
        del self.finished[seq]
        self.next_commit = seq + 1
        self._commit_skipped()
        edge = self.next_commit - self.plans.window  # no running draft sees below this
        for old in [s for s in self.recent if s < edge]:
            del self.recent[old]

    async def _review(self, outcomes: list[DraftOutcome]) -> None:
        ctx = self.ctx
        if not ctx.control.review or ctx.reviewer is None:
            return
        if samples := review_samples(ctx, outcomes):
            apply_review(outcomes, await ctx.reviewer(samples))


async def stream(state: GenerationState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    if not isinstance(ctx.window, Dispatcher):
        ctx.window = Dispatcher(ctx)
    return await ctx.window.run(state)


def route(state: GenerationState) -> str:
    if state.get("status", "running") != "running":
        return END
    return "mine_personas" if state.get("need_personas") else "stream"


def build_stream_graph() -> StateGraph[GenerationState, Context, GenerationState, GenerationState]:
    """The streaming generation ``StateGraph``; compile it with the checkpointer you want."""
    graph = StateGraph(GenerationState, context_schema=Context)
    graph.add_node("stream", traced("stream")(stream))
    graph.add_node("mine_personas", traced("mine_personas")(mine_personas))
    graph.add_edge(START, "stream")
    graph.add_conditional_edges("stream", route, ["mine_personas", END])
    graph.add_edge("mine_personas", "stream")
    return graph
