"""Run budgets: endpoint calls, tokens, cost and wall time, checked before every request."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from personaloom.prices import Prices


class BudgetExhausted(Exception):
    """Raised before a request that the budget no longer allows."""


@dataclass
class Budget:
    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    max_seconds: float | None = None
    calls: int = 0
    tokens: int = 0
    # Money spent at ``prices``, counted from the usage each reply reports. Like tokens it is
    # known only once a reply is in, so calls already in flight when it reaches ``max_cost``
    # still finish: a run can end up to ``concurrency`` calls over the limit.
    cost: float = 0.0
    prices: Prices = field(default_factory=Prices)
    # Seconds spent by earlier sessions of a resumed run; wall time counts across resumes.
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def exhausted(self) -> str | None:
        """The name of the limit that is used up, or None."""
        if self.max_calls is not None and self.calls >= self.max_calls:
            return "max_calls"
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return "max_tokens"
        if self.max_cost is not None and self.cost >= self.max_cost:
            return "max_cost"
        if self.max_seconds is not None and self.elapsed >= self.max_seconds:
            return "max_seconds"
        return None

    def reserve(self) -> None:
        """Count one request about to be sent, or raise if the budget forbids it."""
        with self._lock:
            if limit := self.exhausted():
                raise BudgetExhausted(limit)
            self.calls += 1

    def refund(self) -> None:
        """Give back a reserved call that got no reply (a timeout, a refused connection):
        budgets count what the endpoint served; failed attempts are bounded by the retry
        limits and by the endpoint checks in the LLM layer instead."""
        with self._lock:
            self.calls = max(0, self.calls - 1)

    def add_usage(self, model: str, usage: Mapping[str, Any]) -> None:
        """Count a reply's tokens, and its cost at ``model``'s price (langchain's
        ``usage_metadata``: ``input_tokens``, ``output_tokens``, ``total_tokens``)."""
        cost = self.prices.cost(model, usage.get("input_tokens"), usage.get("output_tokens"))
        with self._lock:
            self.tokens += usage.get("total_tokens", 0) or 0
            self.cost += cost

    def absorb(self, call: Any) -> None:
        """Count a call another process made (a Ray worker's ``CallRecord``) as the trace
        store counts it: answered requests, not cache hits or errors; tokens and cost."""
        if call.cache_hit or call.status == "error" or call.replay_of is not None:
            return
        model = str(call.params.get("model", ""))
        inputs, outputs = call.prompt_tokens or 0, call.completion_tokens or 0
        cost = self.prices.cost(model, inputs, outputs)
        with self._lock:
            self.calls += 1
            self.tokens += inputs + outputs
            self.cost += cost

    def spent(self) -> dict[str, Any]:
        """What run.json records, so that a lost traces.sqlite cannot reset the budget."""
        with self._lock:
            return {"calls": self.calls, "tokens": self.tokens, "cost": round(self.cost, 9)}
