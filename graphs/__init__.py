"""The LangGraph state machine: ``build_graph()`` returns the generation ``StateGraph``."""

from personaloom.graphs.context import Context
from personaloom.graphs.generation import build_graph

__all__ = ["Context", "build_graph"]
