"""The streaming engine's reorder window: what draft ``k`` is planned from and may see.

Drafts are numbered in the order they are planned (their sequence number, ``seq``) and
committed in that order. Draft ``k`` is planned from the outcomes of drafts below
``k - W`` (``W`` = :data:`WINDOW` x concurrency) with drafts ``k - W .. k - 1`` reserved,
whatever has finished meanwhile, and its novelty and opening checks see only the samples of
drafts below ``k - W`` too (``DraftTask.horizon``). So timing never changes what is
planned, sent or written: the same replies give the same dataset, and a second run of an
unchanged spec is answered by the reply cache alone.

A number whose plan finds nothing missing (every open target reserved by drafts in the
window) is skipped; skipping moves the window on, so the plan sees later outcomes.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Container, Mapping
from typing import Any

from personaloom.coverage import Cell, Ledger
from personaloom.graphs.planner import _DRAFT_ID, Planner
from personaloom.graphs.state import DraftTask
from personaloom.ids import stable_seed
from personaloom.spec import Spec
from personaloom.store import RunStore

# x concurrency: drafts between a plan's view and the draft planned. 4 rather than 2: at a
# long-tailed endpoint (p95 5 x the median) 2 x concurrency held dispatch back behind slow
# drafts (34% of the ideal rate at concurrency 16 against 40%; 8 gained nothing more).
WINDOW = 4


def draft_id(seq: int, concurrency: int) -> str:
    """Sequence number -> draft id, in the batch engine's ``s<round>-<index>`` form."""
    return f"s{seq // concurrency:05d}-{seq % concurrency:03d}"


def seq_of(draft_id: str, concurrency: int) -> int | None:
    match = _DRAFT_ID.match(draft_id)
    if not match:
        return None
    return int(match.group(1)) * concurrency + int(draft_id.rsplit("-", 1)[1])


class HiddenFrom:
    """The samples a draft with ``horizon`` must not see, decided when asked (a novelty query
    runs in a thread while commits go on): this session's samples of drafts numbered at or
    above the horizon. Samples of earlier sessions (``prior``) are all seen."""

    def __init__(self, prior: Container[str], horizon: int, concurrency: int):
        self._prior, self._horizon, self._concurrency = prior, horizon, concurrency

    def __contains__(self, sample_id: object) -> bool:
        if not isinstance(sample_id, str) or sample_id in self._prior:
            return False
        seq = seq_of(sample_id, self._concurrency)
        return seq is not None and seq >= self._horizon


class _View:
    """The store as of the window's edge: persona and word uses of applied drafts plus those
    reserved by drafts in the window, accepted samples of applied drafts. Everything else
    (the persona pool, origins) is the store's own."""

    def __init__(self, store: RunStore):
        self._store = store
        self.persona_uses: Counter[str] = Counter()
        self.word_uses: Counter[tuple[str, str]] = Counter()
        self.accepted = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class StreamPlanner:
    """Plans one draft at a time from the view ``WINDOW`` x concurrency drafts back.

    ``record`` takes each committed outcome (in draft order); ``advance(h)`` applies those
    below ``h`` to the view; ``plan(seq, personas)`` reserves and returns draft ``seq``."""

    def __init__(self, spec: Spec, store: RunStore, vocabulary: dict[str, list[str]]):
        self.spec = spec
        self.concurrency = spec.concurrency
        self.window = WINDOW * spec.concurrency
        self.view = _View(store)
        self.planner = Planner(spec, self.view, vocabulary, ledger=Ledger(spec))  # type: ignore[arg-type]
        self.reserved: Counter[Cell] = Counter()
        self.sources: Counter[str | None] = Counter()
        self.tasks: dict[int, DraftTask | None] = {}  # planned, not applied (None: skipped)
        self.outcomes: dict[int, tuple[dict[str, Any], bool] | None] = {}  # committed rows
        self.applied = 0  # drafts below this are in the view
        self.idle = 0  # drafts in a row, up to the view's edge, that were not accepted
        self.next_seq = self._resume(store)

    def _resume(self, store: RunStore) -> int:
        """Reserve every written draft, then apply those a plan of the next draft saw."""
        rows = [(r, True) for r in store.dataset.rows] + [(r, False) for r in store.rejected.rows]
        numbered = []
        for row, accepted in rows:
            seq = seq_of(str(row.get("id", "")), self.concurrency)
            if seq is not None:
                numbered.append((seq, row, accepted))
        numbered.sort(key=lambda item: item[0])
        for seq, row, accepted in numbered:
            persona = row.get("persona_id") or (row.get("persona") or {}).get("id")
            task = DraftTask(
                draft_id=row["id"],
                round=seq // self.concurrency,
                persona_id=str(persona),
                traits=row.get("traits") or {},
                words=row.get("words") or {},
                seed=0,
            )
            self._reserve(seq, task)
            self.outcomes[seq] = (row, accepted)
        next_seq = numbered[-1][0] + 1 if numbered else 0
        self.advance(next_seq - self.window)
        return next_seq

    # -- the window ------------------------------------------------------------------------

    def in_window(self) -> int:
        """Drafts planned and not yet applied to the view."""
        return sum(1 for task in self.tasks.values() if task is not None)

    def record(self, seq: int, row: dict[str, Any] | None, accepted: bool) -> None:
        """Draft ``seq``'s committed row (None: nothing written, an aborted draft)."""
        self.outcomes[seq] = None if row is None else (row, accepted)

    def skip(self, seq: int) -> None:
        self.tasks[seq] = None
        self.outcomes[seq] = None

    def advance(self, horizon: int) -> None:
        """Apply the outcomes of drafts below ``horizon`` (all of them committed)."""
        while self.applied < horizon:
            seq = self.applied
            task = self.tasks.pop(seq, None)
            outcome = self.outcomes.pop(seq, None)
            if task is not None:
                self._apply(task, outcome)
            self.applied += 1

    def _reserve(self, seq: int, task: DraftTask) -> None:
        self.tasks[seq] = task
        for cell in self.planner.ledger.cells_of(task.traits):
            self.reserved[cell] += 1
        self.view.persona_uses[task.persona_id] += 1
        self.sources[self.view.origin(task.persona_id)] += 1
        for part, word in task.words.items():
            self.view.word_uses[(part, word)] += 1

    def _apply(self, task: DraftTask, outcome: tuple[dict[str, Any], bool] | None) -> None:
        for cell in self.planner.ledger.cells_of(task.traits):
            self.reserved[cell] -= 1
        accepted = outcome is not None and outcome[1]
        if not accepted:  # the store counts the words of accepted samples only
            for part, word in task.words.items():
                self.view.word_uses[(part, word)] -= 1
        if outcome is None:  # aborted: its persona use is not in the store either
            self.view.persona_uses[task.persona_id] -= 1
            self.sources[self.view.origin(task.persona_id)] -= 1
            return
        self.planner.ledger.observe(*outcome)
        if accepted:
            self.view.accepted += 1
            self.idle = 0
        else:
            self.idle += 1

    # -- planning --------------------------------------------------------------------------

    def remaining(self) -> int:
        """Accepted samples still missing once every draft in the window is accepted."""
        return self.planner.remaining(reserved=self.reserved, in_flight=self.in_window())

    def plan(self, seq: int, personas: list[str]) -> DraftTask:
        """Draft ``seq``'s assignment among ``personas``, reserved."""
        did = draft_id(seq, self.concurrency)
        rng = random.Random(stable_seed(self.spec.seed, "plan", did))
        # next_task reserves the cells, words and origin in the counters it is given
        view = self.view
        task = self.planner.next_task(
            did, seq // self.concurrency, personas, self.reserved, view.word_uses, self.sources, rng
        )
        task.horizon = seq - self.window
        self.tasks[seq] = task
        view.persona_uses[task.persona_id] += 1
        return task


class OpeningsSeen(Mapping[str, int]):
    """Opening counts without the samples a draft must not see yet."""

    def __init__(self, counts: Counter[str], hidden: Counter[str]):
        self._counts, self._hidden = counts, hidden

    def __getitem__(self, key: str) -> int:
        return self._counts[key] - self._hidden[key]

    def __iter__(self):
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)
