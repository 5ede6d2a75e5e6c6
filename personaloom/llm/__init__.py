"""The LLM layer: structured calls through langchain-openai with caching, retries and traces."""

from personaloom.llm.budget import Budget, BudgetExhausted
from personaloom.llm.cache import ReplyCache
from personaloom.llm.client import LLM, CallInfo, Endpoint, EndpointError, LLMFailure

__all__ = [
    "LLM",
    "Budget",
    "BudgetExhausted",
    "CallInfo",
    "Endpoint",
    "EndpointError",
    "LLMFailure",
    "ReplyCache",
]
