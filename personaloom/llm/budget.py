"""Run budgets: endpoint calls, tokens and wall time, checked before every request."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class BudgetExhausted(Exception):
    """Raised before a request that the budget no longer allows."""


@dataclass
class Budget:
    max_calls: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None
    calls: int = 0
    tokens: int = 0
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

    def add_tokens(self, tokens: int) -> None:
        with self._lock:
            self.tokens += tokens
