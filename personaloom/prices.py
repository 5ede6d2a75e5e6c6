"""What LLM calls cost: the spec's ``prices`` (per million tokens) applied to the token usage
each endpoint reports.

Cost is counted from usage, never from the prompt's length: the endpoint's own count of
prompt and completion tokens per call is what a bill is made of. A model without a price
costs nothing (the embedded model, the test endpoint); ``check_prices`` makes sure a run with
``budget.max_cost`` prices every model it calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from personaloom.traces import TokenUse

PER_TOKENS = 1_000_000


@dataclass(frozen=True)
class Price:
    input: float  # per PER_TOKENS prompt tokens
    output: float  # per PER_TOKENS completion tokens


class Prices:
    """Prices by model name; ``cost`` of an unpriced model is 0."""

    def __init__(self, prices: Mapping[str, Any] | None = None):
        self._prices = {
            name: Price(float(p.input), float(p.output)) for name, p in (prices or {}).items()
        }

    @classmethod
    def of(cls, spec: Any) -> Prices:
        return cls(spec.prices)

    def __bool__(self) -> bool:
        return bool(self._prices)

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def get(self, model: str) -> Price | None:
        return self._prices.get(model)

    def cost(self, model: str, input_tokens: int | None, output_tokens: int | None) -> float:
        price = self._prices.get(model)
        if price is None:
            return 0.0
        spent = (input_tokens or 0) * price.input + (output_tokens or 0) * price.output
        return spent / PER_TOKENS


def total_cost(rows: Iterable[TokenUse], prices: Prices) -> float:
    return sum(prices.cost(r.model, r.input_tokens, r.output_tokens) for r in rows)


def cost_report(rows: list[TokenUse], prices: Prices, floor: float = 0.0) -> dict[str, Any]:
    """The report's ``cost``: the total (never below ``floor``, run.json's count, which a lost
    traces.sqlite cannot reset) and, per agent, calls, tokens and cost."""
    by_agent: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_agent.setdefault(
            row.agent, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
        )
        entry["calls"] += row.calls
        entry["input_tokens"] += row.input_tokens
        entry["output_tokens"] += row.output_tokens
        entry["cost"] += prices.cost(row.model, row.input_tokens, row.output_tokens)
    for entry in by_agent.values():
        entry["cost"] = round(entry["cost"], 6)
    unpriced = sorted({r.model for r in rows if r.model not in prices and r.calls})
    return {
        "total": round(max(total_cost(rows, prices), floor), 6),
        "by_agent": dict(sorted(by_agent.items())),
        "unpriced_models": unpriced,
    }
