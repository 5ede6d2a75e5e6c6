"""personaloom: persona-driven synthetic data generation with coverage targets.

Scripts use ``run(spec)`` (or ``arun``) for a whole run, or ``build_graph()`` to compile and
drive the LangGraph graph themselves.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "arun", "build_graph", "load_spec", "run"]


def __getattr__(name: str) -> Any:
    # Lazy: `personaloom --help` and `personaloom validate` should not import LangGraph and Chroma.
    if name in ("run", "arun"):
        from personaloom import runner

        return getattr(runner, name)
    if name == "build_graph":
        from personaloom.graphs import build_graph

        return build_graph
    if name == "load_spec":
        from personaloom.spec import load_spec

        return load_spec
    raise AttributeError(name)
