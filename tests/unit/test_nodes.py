"""The graph's nodes called alone, each with a ``Runtime`` over a ``Context`` of fakes (an LLM
that answers by role, an embedder that hashes), and the whole batch graph compiled with
LangGraph's ``InMemorySaver``: no endpoint, no HTTP, no runner."""

from __future__ import annotations

import hashlib
import itertools
import random
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime

from personaloom.agents.models import DraftOutcome, DraftTask
from personaloom.corpus import Corpus
from personaloom.graphs import Context, build_graph
from personaloom.graphs.drafting import critique
from personaloom.graphs.generation import commit, plan
from personaloom.graphs.personas import mine_personas
from personaloom.graphs.wiring import wire
from personaloom.llm import Budget, CallInfo
from personaloom.spec import parse_spec
from personaloom.store import RunStore, read_jsonl
from personaloom.vectors import NoveltyIndex, discard_clients

TEXTS = [
    "The harbour master logs every trawler that leaves before dawn and every one that is late.",
    "Our allotment society meets on Sundays to argue about slugs, compost and the new hose.",
    "The night bus driver sings old songs between the depot and the last stop by the river.",
]
PEOPLE = itertools.cycle(
    [
        "A retired ferry captain in Bergen who restores wooden boats and teaches knots to children",
        "A night-shift nurse in Lagos who writes radio plays about her patients on her breaks",
        "A beekeeper in rural Ontario who sells honey at the market and keeps a weather diary",
        "A teenage chess prodigy in Pune who commentates her own games for her younger cousins",
        "A lighthouse keeper's widow in Brittany who paints storms and runs a tiny museum",
        "A bicycle courier in Mexico City who studies architecture at night and sketches roofs",
    ]
)


class FakeLLM:
    """Answers every role with a reply its schema accepts; counts calls per role."""

    def __init__(self, score: int = 5) -> None:
        self.budget = Budget()
        self.score = score
        self.calls: list[str] = []
        self._n = itertools.count()

    async def call(
        self,
        role: str,
        template: Any,
        variables: dict[str, Any],
        schema: Any,
        info: CallInfo,
        *,
        seed: int,
        **overrides: Any,
    ) -> Any:
        self.calls.append(role)
        n = next(self._n)
        if role in ("persona_miner", "persona_relater"):
            people = [f"{next(PEOPLE)}, number {n}-{i}." for i in range(2)]
            if role == "persona_relater":
                people = [f"neighbour: {p}" for p in people]
            return schema.model_validate({"personas": people})
        if role == "writer":
            words = " ".join(f"w{n}x{i}" for i in range(12))
            return schema.model_validate({"title": f"Tale {n}", "story": f"Story {n}: {words}."})
        if role == "critic":
            fields = {name: True for name in schema.model_fields if name.startswith("has_")}
            return schema.model_validate({"score": self.score, "feedback": "fine", **fields})
        raise AssertionError(f"unexpected role {role}")


class HashEmbedder:
    """A unit vector per text, from its hash: different texts are far apart."""

    name = "test:hash"

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            rng = random.Random(hashlib.sha256(text.encode()).digest())
            vector = [rng.gauss(0, 1) for _ in range(64)]
            norm = sum(v * v for v in vector) ** 0.5
            out.append([v / norm for v in vector])
        return out


@pytest.fixture
def ctx(tmp_path: Path) -> Any:
    (tmp_path / "corpus").mkdir()
    for i, text in enumerate(TEXTS):
        (tmp_path / "corpus" / f"{i}.txt").write_text(text + "\n")
    spec = parse_spec(
        {
            "name": "nodes",
            "task": {
                "instruction": "Write a short story.",
                "output": {"title": "str", "story": "str"},
                "length": {"min_words": 5, "max_words": 200},
            },
            "corpus": [{"path": "corpus/*.txt"}],
            "personas": {"per_text": 2, "relate_depth": 0, "max_uses": 1},
            "traits": {"feature": {"values": ["dialogue", "moral"], "target": 2}},
            "novelty": {"threshold": 0.9},
            "concurrency": 2,
            "seed": 0,
        },
        base_dir=tmp_path,
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    context = Context(
        spec=spec,
        store=RunStore(run_dir),
        llm=FakeLLM(),  # type: ignore[arg-type]
        embedder=HashEmbedder(),  # type: ignore[arg-type]
        index=NoveltyIndex(run_dir / "chroma"),
        corpus=Corpus(spec),
    )
    yield wire(context)
    context.index.close()
    discard_clients(run_dir / "chroma")


def runtime(ctx: Any) -> Runtime:
    return Runtime(context=ctx)


async def test_plan_asks_for_personas_then_assigns_a_batch_over_the_missing_values(ctx) -> None:
    first = await plan({"status": "running"}, runtime(ctx))
    assert first["need_personas"] >= 2 and first["batch"] == []
    mined = await mine_personas({"need_personas": first["need_personas"]}, runtime(ctx))
    assert mined["corpus_cursor"] >= 1 and len(ctx.store.persona_by_id) >= 2
    second = await plan({"status": "running", **mined}, runtime(ctx))
    batch = second["batch"]
    assert len(batch) == 2 and all(isinstance(t, DraftTask) for t in batch)
    assert {t.traits["feature"] for t in batch} == {"dialogue", "moral"}
    assert all(t.persona_id in ctx.store.persona_by_id for t in batch)
    assert len({t.persona_id for t in batch}) == 2  # max_uses 1


def task(ctx: Any, feature: str = "moral") -> DraftTask:
    persona = ctx.store.persona_by_id and next(iter(ctx.store.persona_by_id))
    return DraftTask(
        draft_id="s00000-000", round=0, persona_id=persona, traits={"feature": feature}, seed=1
    )


async def test_critique_accepts_a_good_draft_and_asks_a_revision_of_a_poor_one(ctx) -> None:
    await mine_personas({"need_personas": 1}, runtime(ctx))
    record = {"title": "Tale", "story": "Once a small dog found a ball and learned to share it."}
    good = await critique({"task": task(ctx), "record": record, "revision": 0}, runtime(ctx))
    assert good["verdict"] == "accept" and good["score"] == 5 and len(good["embedding"]) == 64
    ctx.llm.score = 1
    poor = await critique({"task": task(ctx), "record": record, "revision": 0}, runtime(ctx))
    assert poor["verdict"] == "revise" and poor["reason"] == "low_quality"
    assert ctx.llm.calls.count("critic") == 2


async def test_commit_writes_accepted_and_rejected_drafts_and_keeps_the_counts(ctx) -> None:
    await mine_personas({"need_personas": 2}, runtime(ctx))
    people = list(ctx.store.persona_by_id)
    accepted = DraftOutcome(
        task=DraftTask(
            draft_id="s00000-000",
            round=0,
            persona_id=people[0],
            traits={"feature": "moral"},
            seed=1,
        ),
        status="accepted",
        record={"title": "Tale", "story": "Once a small dog found a ball and learned to share."},
        score=5,
    )
    rejected = DraftOutcome(
        task=DraftTask(
            draft_id="s00000-001",
            round=0,
            persona_id=people[1],
            traits={"feature": "dialogue"},
            seed=2,
        ),
        status="rejected",
        record={"title": "T", "story": "short"},
        reason="too_short",
    )
    update = await commit({"outcomes": [rejected, accepted]}, runtime(ctx))
    assert update["outcomes"] is None
    dataset = read_jsonl(ctx.store.run_dir / "dataset.jsonl")
    assert [s["id"] for s in dataset] == ["s00000-000"]
    assert [r["id"] for r in read_jsonl(ctx.store.run_dir / "rejected.jsonl")] == ["s00000-001"]
    assert ctx.openings["once a small"] == 1
    assert ctx.planner.ledger.accepted[frozenset({("feature", "moral")})] == 1
    assert ctx.planner.remaining() == 3


async def test_the_batch_graph_compiled_with_an_in_memory_saver_meets_its_targets(ctx) -> None:
    app = build_graph().compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}, "recursion_limit": 200}
    final = await app.ainvoke(
        {"status": "running", "stop_reason": None, "outcomes": None, "round": 0},
        config,
        context=ctx,
    )
    assert final["status"] == "complete"
    samples = read_jsonl(ctx.store.run_dir / "dataset.jsonl")
    features = sorted(s["traits"]["feature"] for s in samples)
    assert features == ["dialogue", "dialogue", "moral", "moral"]
    saved = app.get_state(config)
    assert saved.values["status"] == "complete" and not saved.next
    assert ctx.llm.calls.count("writer") == ctx.llm.calls.count("critic") == 4
