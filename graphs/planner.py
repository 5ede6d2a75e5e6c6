"""The coverage planner (not an LLM): where to spend the next drafts.

Counts come from the run store (rebuilt from ``dataset.jsonl``). Each new assignment takes,
per trait, the value with the largest remaining relative deficit, with a little jitter so
concurrent drafts do not march in lockstep, and reserves it, so a batch never asks for more
than is missing. Personas: least used first; vocabulary words: least used first.
"""

from __future__ import annotations

import random
from collections import Counter

from personaloom.graphs.state import DraftTask

from personaloom.ids import stable_seed
from personaloom.spec import Spec
from personaloom.store import RunStore

JITTER = 0.15


class Planner:
    def __init__(self, spec: Spec, store: RunStore, vocabulary: dict[str, list[str]]):
        self.spec = spec
        self.store = store
        self.vocabulary = vocabulary
        self.targets = spec.targets()

    def deficit(self, trait: str, value: str, reserved: Counter | None = None) -> int:
        have = self.store.coverage[(trait, value)] + (reserved or Counter())[(trait, value)]
        return max(0, self.targets[trait][value] - have)

    def remaining(self) -> int:
        """The fewest further accepted samples that can meet every target."""
        needs = [self.spec.total - self.store.accepted if self.spec.total else 0]
        for trait, values in self.targets.items():
            needs.append(sum(self.deficit(trait, value) for value in values))
        return max(0, *needs)

    def unmet(self) -> dict[str, dict[str, int]]:
        """Per trait, the values still short of their target and by how much."""
        result: dict[str, dict[str, int]] = {}
        for trait, values in self.targets.items():
            short = {v: d for v in values if (d := self.deficit(trait, v))}
            if short:
                result[trait] = short
        return result

    def available_personas(self, exhausted: bool) -> list[str]:
        """Pool personas that may write more drafts (all of them once nothing new can be mined)."""
        pool = list(self.store.persona_by_id)
        if exhausted:
            return pool
        cap = self.spec.personas.max_uses
        return [p for p in pool if self.store.persona_uses[p] < cap]

    def assign(self, round_: int, size: int, personas: list[str]) -> list[DraftTask]:
        """Up to ``size`` assignments, one persona each (fewer if personas run short)."""
        rng = random.Random(stable_seed(self.spec.seed, "plan", round_))
        reserved: Counter[tuple[str, str]] = Counter()
        free = list(personas)  # one draft per persona per batch
        word_load = Counter(self.store.word_uses)
        tasks = []
        for index in range(min(size, len(personas))):
            persona = min(free, key=lambda p: (self.store.persona_uses[p], rng.random()))
            free.remove(persona)
            traits = {trait: self._pick(trait, reserved, rng) for trait in self.targets}
            for trait, value in traits.items():
                reserved[(trait, value)] += 1
            words = {}
            for part, options in self.vocabulary.items():
                word = min(options, key=lambda w: (word_load[(part, w)], rng.random()))
                word_load[(part, word)] += 1
                words[part] = word
            draft_id = f"s{round_:05d}-{index:03d}"
            tasks.append(
                DraftTask(
                    draft_id=draft_id,
                    round=round_,
                    persona_id=persona,
                    traits=traits,
                    words=words,
                    seed=stable_seed(self.spec.seed, draft_id),
                )
            )
        return tasks

    def _pick(self, trait: str, reserved: Counter, rng: random.Random) -> str:
        targets = self.targets[trait]

        def need(value: str) -> float:
            target = targets[value]
            if target == 0:
                return -1.0
            return self.deficit(trait, value, reserved) / target

        # Largest relative deficit first; once every value is met, the least covered one.
        return max(targets, key=lambda v: need(v) + rng.uniform(0, JITTER))
