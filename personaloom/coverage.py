"""Coverage bookkeeping: targets per cell, what was accepted and tried, and stagnation.

A *cell* is a set of (trait, value) pairs: one pair for a per-value target, two for a joint
target. A sample counts for a cell when its traits hold every pair. The ledger is rebuilt
from the run store's files (in draft-id order, which is the order drafts were committed), so
it never drifts from ``dataset.jsonl`` and ``rejected.jsonl``.

Stagnation: a cell whose last ``patience`` drafts were all rejected gets a *strike*. One
strike sets it aside (the planner only returns to it when nothing else is missing); a second
strike gives it up for the run, which then ends with an account of why it could not be met.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from personaloom.spec import Spec

Cell = frozenset[tuple[str, str]]


def cell_name(cell: Cell, order: list[str] | None = None) -> tuple[str, str]:
    """``("setting", "sea")`` or ``("difficulty×topic", "easy×algebra")``: traits in
    ``order`` (a joint target's own order), else alphabetical."""
    rank = {t: i for i, t in enumerate(order or [])}
    pairs = sorted(cell, key=lambda pair: (rank.get(pair[0], len(rank)), pair))
    return "×".join(t for t, _ in pairs), "×".join(v for _, v in pairs)


def spec_cells(spec: Spec) -> dict[Cell, int]:
    """Every target cell of a spec with its target (per-value first, then joint cells)."""
    cells: dict[Cell, int] = {}
    for trait, values in spec.targets().items():
        for value, target in values.items():
            cells[frozenset({(trait, value)})] = target
    for (a, b), grid in spec.joint_targets().items():
        for (va, vb), target in grid.items():
            cells[frozenset({(a, va), (b, vb)})] = target
    return cells


class Ledger:
    """Accepted and attempted drafts per target cell, rejection reasons and strikes."""

    def __init__(self, spec: Spec, rows: Iterable[tuple[dict[str, Any], bool]] = ()):
        self.targets = spec_cells(spec)
        self._orders = {frozenset(j.traits): list(j.traits) for j in spec.joint}
        self.patience = spec.stagnation.patience
        self.accepted: Counter[Cell] = Counter()
        self.attempts: Counter[Cell] = Counter()
        self.reasons: dict[Cell, Counter[str]] = defaultdict(Counter)
        self.streak: Counter[Cell] = Counter()
        self.strikes: Counter[Cell] = Counter()
        self.total_accepted = 0
        self._by_pair: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        for cell in self.targets:
            for pair in cell:
                self._by_pair[pair].append(cell)
        for row, accepted in rows:
            self.observe(row, accepted)

    @classmethod
    def from_store(cls, spec: Spec, store: Any) -> Ledger:
        rows = [(r, True) for r in store.dataset.rows] + [(r, False) for r in store.rejected.rows]
        rows.sort(key=lambda item: item[0]["id"])
        return cls(spec, rows)

    def cells_of(self, traits: dict[str, str]) -> list[Cell]:
        """The target cells a draft with these traits counts for."""
        pairs = set(traits.items())
        seen: dict[Cell, None] = {}
        for pair in pairs:
            for cell in self._by_pair.get(pair, ()):
                if cell <= pairs:
                    seen[cell] = None
        return list(seen)

    def observe(self, row: dict[str, Any], accepted: bool) -> list[Cell]:
        """Count one committed draft; returns the cells that just got a strike."""
        if accepted:
            self.total_accepted += 1
        struck = []
        # A trait mismatch is the fault of the traits the critic did not confirm, not of the
        # values they were paired with: only their cells' streaks grow.
        blamed = set(row.get("unconfirmed") or ()) if not accepted else set()
        for cell in self.cells_of(row.get("traits") or {}):
            self.attempts[cell] += 1
            if accepted:
                self.accepted[cell] += 1
                self.streak[cell] = 0
                continue
            if blamed and not any(trait in blamed for trait, _ in cell):
                continue
            self.reasons[cell][row.get("reason") or "unknown"] += 1
            self.streak[cell] += 1
            if self.streak[cell] >= self.patience and self.accepted[cell] < self.targets[cell]:
                self.strikes[cell] += 1
                self.streak[cell] = 0
                struck.append(cell)
        return struck

    def name(self, cell: Cell) -> tuple[str, str]:
        """The cell's trait and value names, a joint cell's traits in its spec order."""
        return cell_name(cell, self._orders.get(frozenset(t for t, _ in cell)))

    def deficit(self, cell: Cell, reserved: Counter[Cell] | None = None) -> int:
        have = self.accepted[cell] + (reserved[cell] if reserved else 0)
        return max(0, self.targets[cell] - have)

    def set_aside(self, cell: Cell) -> bool:
        return self.strikes[cell] >= 1

    def given_up(self, cell: Cell) -> bool:
        return self.strikes[cell] >= 2

    def dominant_reason(self, cell: Cell) -> str | None:
        reasons = self.reasons.get(cell)
        return reasons.most_common(1)[0][0] if reasons else None

    def stagnant(self) -> list[dict[str, Any]]:
        """Unmet cells that were set aside or given up, with why."""
        result = []
        for cell, target in self.targets.items():
            if self.strikes[cell] and self.accepted[cell] < target:
                trait, value = self.name(cell)
                result.append(
                    {
                        "trait": trait,
                        "value": value,
                        "target": target,
                        "accepted": self.accepted[cell],
                        "attempts": self.attempts[cell],
                        "reason": self.dominant_reason(cell),
                        "given_up": self.given_up(cell),
                    }
                )
        return result
