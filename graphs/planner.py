"""The coverage planner (not an LLM): where to spend the next drafts.

Each new assignment (a persona, its trait values, its words) is the one that closes the most
remaining *relative* deficit over every target cell it would count for (per-value targets
and joint cells alike), with a little jitter so concurrent drafts do not march in lockstep.
Assignments are reserved as they are made, so a batch never asks for more than is missing
and overshoot is bounded by the drafts in flight.

- Critic traits are assigned: the writer is told the value and the critic must confirm it.
- Persona traits come with the persona (labelled when it was mined): the planner picks a
  persona that carries a needed value.
- Cells that keep failing are set aside, then given up (see ``coverage.Ledger``).
- Personas: least used first, then the least used origin (source text or pool row),
  spreading drafts over the persona graph. Vocabulary words: least used first.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from typing import Any

from personaloom.coverage import Cell, Ledger
from personaloom.graphs.state import DraftTask
from personaloom.ids import stable_seed
from personaloom.spec import Spec
from personaloom.store import RunStore

JITTER = 0.15
SET_ASIDE_WEIGHT = 0.02  # a set-aside cell only wins when nothing else is missing
MAX_COMBINATIONS = 512  # beyond this, critic traits are picked one at a time


_DRAFT_ID = re.compile(r"s(\d{5,})-\d+$")


def first_free_round(store: RunStore) -> int:
    """One past the highest round with a written sample or rejection (0 for a new run).

    A resumed graph starts planning from its checkpoint's round, but checkpoints are saved
    asynchronously: after a kill, the last round's commit can be on disk while its checkpoint
    is not. Planning again from there would reuse draft ids that are already written, and
    the commit would drop those drafts as duplicates, wasting their calls."""
    rounds = [
        int(m.group(1))
        for row in (*store.dataset.rows, *store.rejected.rows)
        if (m := _DRAFT_ID.match(str(row.get("id", ""))))
    ]
    return max(rounds, default=-1) + 1


class Planner:
    def __init__(
        self,
        spec: Spec,
        store: RunStore,
        vocabulary: dict[str, list[str]],
        ledger: Ledger | None = None,
    ):
        self.spec = spec
        self.store = store
        self.vocabulary = vocabulary
        self.ledger = ledger or Ledger.from_store(spec, store)
        self.targets = spec.targets()
        self.critic_traits = spec.traits_from("critic")
        self.persona_traits = spec.traits_from("persona")
        self.unreachable: dict[Cell, str] = {}
        self.first_free_round = first_free_round(store)

    # -- how much is missing -------------------------------------------------------------

    def _open(self, cell: Cell) -> bool:
        return not self.ledger.given_up(cell) and cell not in self.unreachable

    def remaining(
        self,
        *,
        include_blocked: bool = False,
        reserved: Counter[Cell] | None = None,
        in_flight: int = 0,
    ) -> int:
        """The fewest further accepted samples that could meet every target still open
        (with ``include_blocked``, given-up and unreachable cells too), counting ``in_flight``
        drafts whose cells are ``reserved`` as accepted."""
        needs = [self.spec.total - self.store.accepted - in_flight if self.spec.total else 0]
        groups: dict[tuple[str, ...], int] = Counter()
        for cell in self.ledger.targets:
            if include_blocked or self._open(cell):
                groups[_group(cell)] += self.ledger.deficit(cell, reserved)
        needs.extend(groups.values())
        return max(0, *needs)

    def open_deficit(self) -> bool:
        """Whether some target cell still short of its target is neither given up nor
        unreachable (stagnation then bounds the run)."""
        return any(self._open(c) and self.ledger.deficit(c) for c in self.ledger.targets)

    def unmet(self) -> dict[str, dict[str, int]]:
        """Per trait (or ``a×b`` pair), the values or cells still short and by how much."""
        result: dict[str, dict[str, int]] = {}
        for cell in self.ledger.targets:
            if short := self.ledger.deficit(cell):
                trait, value = self.ledger.name(cell)
                result.setdefault(trait, {})[value] = short
        return result

    def blocked(self) -> list[dict[str, Any]]:
        """Unmet cells the run has given up on, with the reason."""
        result = [c for c in self.ledger.stagnant() if c["given_up"]]
        for cell, reason in self.unreachable.items():
            trait, value = self.ledger.name(cell)
            result.append(
                {
                    "trait": trait,
                    "value": value,
                    "target": self.ledger.targets[cell],
                    "accepted": self.ledger.accepted[cell],
                    "attempts": self.ledger.attempts[cell],
                    "reason": reason,
                    "given_up": True,
                }
            )
        return result

    # -- personas --------------------------------------------------------------------------

    def available_personas(self, exhausted: bool) -> list[str]:
        """Pool personas that may write more drafts (all of them once nothing new can be mined)."""
        pool = list(self.store.persona_by_id)
        if exhausted:
            return pool
        cap = self.spec.personas.max_uses
        return [p for p in pool if self.store.persona_uses[p] < cap]

    def labels(self, persona_id: str) -> dict[str, str]:
        persona = self.store.persona_by_id[persona_id]
        return {t: v for t, v in (persona.get("traits") or {}).items() if t in self.persona_traits}

    def wanted_labels(self, personas: list[str]) -> dict[str, list[str]]:
        """Persona-trait values still needed that none of ``personas`` carries."""
        carried = {(t, v) for p in personas for t, v in self.labels(p).items()}
        wanted: dict[str, list[str]] = {}
        for trait in self.persona_traits:
            for value in self.targets[trait]:
                cell = frozenset({(trait, value)})
                if (trait, value) not in carried and self.ledger.deficit(cell) and self._open(cell):
                    wanted.setdefault(trait, []).append(value)
        return wanted

    def mark_unreachable(self, pool: list[str]) -> None:
        """With nothing left to mine, persona-trait values no persona carries are given up."""
        for trait, values in self.wanted_labels(pool).items():
            for value in values:
                self.unreachable[frozenset({(trait, value)})] = "no_persona"

    # -- assignments -----------------------------------------------------------------------

    def assign(self, round_: int, size: int, personas: list[str]) -> list[DraftTask]:
        """Up to ``size`` assignments, one persona each (fewer if personas run short)."""
        rng = random.Random(stable_seed(self.spec.seed, "plan", round_))
        reserved: Counter[Cell] = Counter()
        free = list(personas)  # one draft per persona per batch
        word_load = Counter(self.store.word_uses)
        source_load = Counter(
            self.store.origin(p) for p, n in self.store.persona_uses.items() for _ in range(n)
        )
        tasks = []
        for index in range(min(size, len(personas))):
            draft_id = f"s{round_:05d}-{index:03d}"
            task = self.next_task(draft_id, round_, free, reserved, word_load, source_load, rng)
            free.remove(task.persona_id)
            tasks.append(task)
        return tasks

    def next_task(
        self,
        draft_id: str,
        round_: int,
        personas: list[str],
        reserved: Counter[Cell],
        word_load: Counter[tuple[str, str]],
        source_load: Counter[str | None],
        rng: random.Random,
    ) -> DraftTask:
        """One assignment among ``personas``, reserved in ``reserved`` (its target cells),
        ``word_load`` (its words) and ``source_load`` (its persona's origin)."""
        persona, traits = self._choose(personas, reserved, source_load, rng)
        source_load[self.store.origin(persona)] += 1
        for cell in self.ledger.cells_of(traits):
            reserved[cell] += 1
        words = {}
        for part, options in self.vocabulary.items():
            word = min(options, key=lambda w: (word_load[(part, w)], rng.random()))
            word_load[(part, word)] += 1
            words[part] = word
        return DraftTask(
            draft_id=draft_id,
            round=round_,
            persona_id=persona,
            traits=traits,
            words=words,
            seed=stable_seed(self.spec.seed, draft_id),
        )

    def _choose(
        self,
        free: list[str],
        reserved: Counter[Cell],
        source_load: Counter[str | None],
        rng: random.Random,
    ) -> tuple[str, dict[str, str]]:
        """The persona and trait values that close the most relative deficit."""

        def spread(p: str) -> tuple:
            return (self.store.persona_uses[p], source_load[self.store.origin(p)])

        # One candidate persona per label combination: the least used, then least used source.
        groups: dict[tuple, str] = {}
        for p in sorted(free, key=lambda p: (*spread(p), rng.random())):
            key = tuple(sorted(self.labels(p).items()))
            groups.setdefault(key, p)
        needy = self._groups_in_need(reserved)
        best: tuple[float, str, dict[str, str]] | None = None
        for persona in groups.values():
            fixed = self.labels(persona)
            traits = self._critic_values(fixed, reserved, needy, rng)
            score = _jittered(self._score(traits, reserved, needy), rng)
            if best is None or score > best[0]:
                best = (score, persona, traits)
        assert best is not None
        return best[1], best[2]

    def _critic_values(
        self,
        fixed: dict[str, str],
        reserved: Counter[Cell],
        needy: set[tuple[str, ...]],
        rng: random.Random,
    ) -> dict[str, str]:
        """Critic-trait values to go with a persona's labels."""
        options = [list(self.targets[t]) for t in self.critic_traits]
        size = 1
        for values in options:
            size *= len(values)
        if size <= MAX_COMBINATIONS:
            best: tuple[float, dict[str, str]] | None = None
            for combo in itertools.product(*options):
                traits = {**fixed, **dict(zip(self.critic_traits, combo, strict=True))}
                score = _jittered(self._score(traits, reserved, needy), rng)
                if best is None or score > best[0]:
                    best = (score, traits)
            return best[1] if best else dict(fixed)
        traits = dict(fixed)
        for trait in self.critic_traits:  # too many combinations: one trait at a time
            traits[trait] = max(
                self.targets[trait],
                key=lambda v: _jittered(self._score({**traits, trait: v}, reserved, needy), rng),
            )
        return {t: traits[t] for t in self.spec.traits if t in traits}

    def _score(
        self, traits: dict[str, str], reserved: Counter[Cell], needy: set[tuple[str, ...]]
    ) -> float:
        """Expected relative deficit closed by a draft with these traits.

        The deficit closed over all the draft's target cells (set-aside cells count for
        little), times the chance the draft is accepted, estimated per value from the run so
        far (Laplace-smoothed). A value the critic keeps rejecting thus stops dragging good
        values down with it. Met cells add a tiny preference for the least covered values,
        which only matters while a ``total`` is still short.
        """
        gain, waste, fill, chance = 0.0, 0.0, 0.0, 1.0
        for cell in self.ledger.cells_of(traits):
            target = self.ledger.targets[cell]
            if len(cell) == 1:
                chance *= (self.ledger.accepted[cell] + 1) / (self.ledger.attempts[cell] + 2)
            if not target or not self._open(cell):
                continue
            if need := self.ledger.deficit(cell, reserved) / target:
                gain += need * (SET_ASIDE_WEIGHT if self.ledger.set_aside(cell) else 1.0)
            else:
                fill += (self.ledger.accepted[cell] + reserved[cell]) / target
                if _group(cell) in needy:
                    waste += 1 / target
        return (gain - waste) * chance - 0.001 * fill

    def _groups_in_need(self, reserved: Counter[Cell]) -> set[tuple[str, ...]]:
        """Trait groups (a trait, or a joint pair) with a cell still short that is being worked
        on (open, not set aside). Putting a draft in a met cell of such a group overshoots
        that cell for nothing: the short cell still needs its own draft later. Without this
        the planner would trade a met value with a good acceptance rate against a short one
        with a poor rate, and every such trade ends in one sample more than asked for."""
        return {
            _group(c)
            for c in self.ledger.targets
            if self._open(c) and not self.ledger.set_aside(c) and self.ledger.deficit(c, reserved)
        }


def _group(cell: Cell) -> tuple[str, ...]:
    return tuple(sorted(t for t, _ in cell))


def _jittered(score: float, rng: random.Random) -> float:
    """Up to ``JITTER`` more, relative, so that a zero stays near zero."""
    return score * (1 + rng.uniform(0, JITTER)) if score > 0 else score + rng.uniform(0, 1e-4)
