"""What nodes get through LangGraph's ``context_schema``: clients, stores, prompts, the spec."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from personaloom.avoid import AvoidSet
from personaloom.control import RunControl
from personaloom.corpus import Corpus
from personaloom.embeddings import Embedder
from personaloom.events import EventSink
from personaloom.llm import LLM
from personaloom.memory import NoveltyMemory
from personaloom.prompts import PromptTemplate, load_template
from personaloom.spec import ROLES, Spec, read_words
from personaloom.store import RunStore
from personaloom.vectors import NoveltyIndex

if TYPE_CHECKING:
    from personaloom.agents.persona_gate import PersonaGate
    from personaloom.graphs.planner import Planner
    from personaloom.graphs.workers import WorkerPool

# The streaming engine's review callback: the accepted drafts ready to commit, as the reviewer
# sees them -> the ids turned down.
StreamReviewer = Callable[[list[dict[str, Any]]], Awaitable[list[str]]]


class DraftView(Protocol):
    """What a streaming draft with a horizon may see (graphs.stream's Dispatcher, or a Ray
    worker's copy of it): samples it must pass over, openings it must not count."""

    def hidden(self, horizon: int) -> Container[str]: ...

    def hidden_openings(self, horizon: int) -> Counter[str]: ...


@dataclass
class Context:
    spec: Spec
    store: RunStore
    llm: LLM
    embedder: Embedder
    index: NoveltyIndex
    corpus: Corpus
    events: EventSink = field(default_factory=EventSink)
    templates: dict[str, PromptTemplate] = field(default_factory=dict)
    vocabulary: dict[str, list[str]] = field(default_factory=dict)
    stall_rounds: int = 10  # idle rounds before a run with no open target gives up
    control: RunControl = field(default_factory=RunControl)
    # Made by graphs.wiring.wire before the graph runs (None only in a Ray worker's context)
    planner: Planner | None = None  # what to draft next, and the coverage ledger
    openings: Counter[str] | None = None  # accepted samples' openings, kept up to date by commit
    pool: list[dict[str, Any]] = field(default_factory=list)  # pool personas (personaloom.pool)
    avoid: AvoidSet | None = None  # items samples must not resemble (personaloom.avoid)
    memory: NoveltyMemory | None = None  # novelty.memory: earlier runs' samples
    persona_gate: PersonaGate | None = None  # what a new persona is checked against
    window: DraftView | None = None  # the streaming engine's: what its drafts may see
    reviewer: StreamReviewer | None = None  # the streaming engine's review (samples -> rejected)
    workers: WorkerPool | None = None  # Ray actors doing the drafts (graphs.workers)

    @property
    def novelty_threshold(self) -> float:
        """The live near-duplicate bar: the control's override, else the spec's."""
        override = self.control.novelty_threshold
        return self.spec.novelty.threshold if override is None else override

    @property
    def min_score(self) -> int:
        """The live critic bar: the control's override, else the spec's."""
        override = self.control.min_score
        return self.spec.critic.min_score if override is None else override

    def __post_init__(self) -> None:
        for role in ROLES:
            if role not in self.templates:
                override = self.spec.prompts.get(role)
                self.templates[role] = load_template(
                    role, self.spec.resolve(override) if override else None
                )
        if not self.vocabulary:
            self.vocabulary = {
                part: read_words(self.spec.resolve(path))
                for part, path in self.spec.vocabulary.items()
            }
