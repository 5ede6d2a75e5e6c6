"""Node start and end events in the trace store, without touching the nodes themselves."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from langgraph.runtime import Runtime

from personaloom.graphs.context import Context


def traced(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a node so that ``node_start`` and ``node_end`` (with its duration) are recorded."""

    def wrap(node: Callable[..., Any]) -> Callable[..., Any]:
        wants_runtime = "runtime" in inspect.signature(node).parameters

        async def traced_node(state: dict, runtime: Runtime[Context]) -> Any:
            events = runtime.context.events
            task = state.get("task")
            sample = task.draft_id if task is not None else None
            events.record("node_start", node=name, sample_id=sample)
            started = time.perf_counter()
            ok = False
            try:
                result = node(state, runtime) if wants_runtime else node(state)
                if inspect.isawaitable(result):
                    result = await result
                ok = True
                return result
            finally:
                events.record(
                    "node_end",
                    node=name,
                    sample_id=sample,
                    ms=round((time.perf_counter() - started) * 1000, 2),
                    ok=ok,
                )

        # Not functools.wraps: LangGraph would read the wrapped signature and, for a node
        # without a `runtime` parameter, not pass the runtime this wrapper needs.
        traced_node.__name__ = node.__name__
        traced_node.__doc__ = node.__doc__
        return traced_node

    return wrap
