"""Structured LLM calls: cache, budget, concurrency limit, retries and a trace per attempt.

One ``ChatOpenAI`` per role, created with ``max_retries=0`` and an explicit timeout: retries
happen here so that each attempt is traced with its number and a ``Retry-After`` header is
honoured. The standard LangChain callback path is left alone, so LangSmith tracing works
when its environment variables are set.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import openai
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, SecretStr

from personaloom.llm import structured
from personaloom.llm.budget import Budget
from personaloom.llm.cache import ReplyCache, digest, public_url
from personaloom.llm.http import async_client
from personaloom.llm.structured import ParseError, Strategy
from personaloom.prompts import PromptTemplate
from personaloom.traces import CallRecord, TraceStore


class MalformedReply(Exception):
    """The endpoint answered with a body that is not JSON (a proxy's error page, a reply cut
    short): retried like a server error, never passed on as a crash."""


RETRYABLE = (
    MalformedReply,
    openai.RateLimitError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.InternalServerError,
)
MAX_RETRY_AFTER = 120.0
# Requests in a row that timed out (no reply from the endpoint in between) after which the
# endpoint counts as unable to serve the run, like an unreachable one: the run stops with
# an error and stays resumable, instead of failing every draft until the budget is gone.
TIMEOUT_TRIP = 8


@dataclass(frozen=True)
class Endpoint:
    """A role's resolved model settings. ``api_key`` is a SecretStr and never serialised."""

    model: str
    base_url: str | None = None
    api_key: SecretStr | None = field(default=None, repr=False)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    timeout: float = 60.0
    max_retries: int = 3
    strategy: str = "auto"
    embedded: bool = False  # the local server personaloom started: new port every run

    def public(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": public_url(self.base_url)}

    def identity(self) -> dict[str, Any]:
        """What the cache key knows of the endpoint: stable across runs, no credentials."""
        return {
            "model": self.model,
            "base_url": "embedded" if self.embedded else public_url(self.base_url),
        }


@dataclass(frozen=True)
class CallInfo:
    """What a call is for; goes into the trace."""

    agent: str
    node: str | None = None
    sample_id: str | None = None
    persona_id: str | None = None
    replay_of: int | None = None  # the call this one replays (`personaloom traces replay`)


class EndpointError(Exception):
    """The endpoint cannot serve this run at all (unreachable, bad key, unknown model).

    Not a per-draft failure: it ends the run with an error, resumable once it is fixed.
    """


class LLMFailure(Exception):
    """A call that produced no usable result: ``reason`` is 'llm_error' or 'unparseable'."""

    def __init__(self, reason: str, details: str):
        super().__init__(f"{reason}: {details}")
        self.reason = reason
        self.details = details


def retry_delay(exc: Exception, attempt: int) -> float:
    """Seconds to wait: the server's Retry-After if it sent one, else jittered backoff."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return min(max(float(value) * scale, 0.0), MAX_RETRY_AFTER)
            except ValueError:
                pass
    return min(0.5 * 2 ** (attempt - 1), 20.0) * (0.75 + random.random() / 2)


# What a request can fail with that ``LLM._failed`` turns into a retry or an error.
_REQUEST_ERRORS = (*RETRYABLE, openai.APIStatusError)


class LLM:
    def __init__(
        self,
        endpoints: dict[str, Endpoint],
        *,
        traces: TraceStore,
        budget: Budget,
        cache: ReplyCache | None = None,
        concurrency: int = 4,
        start_embedded: Callable[[], Awaitable[str]] | None = None,
        notice: Callable[[str], object] | None = None,
    ):
        self.endpoints = endpoints
        self._notice = notice or (lambda message: None)
        self._timeouts: dict[str | None, int] = {}  # base URL -> requests timed out in a row
        self.traces = traces
        self.budget = budget
        self.cache = cache
        self._limit = asyncio.Semaphore(concurrency)
        # The embedded model starts on the first request the cache cannot answer, so a
        # fully cached rerun never pays for it.
        self._start_embedded = start_embedded
        self._embedded: asyncio.Task[str] | None = None
        self._answered: set[str | None] = set()  # base URLs that have answered this run
        self._chats: dict[str, ChatOpenAI] = {}
        # Our own HTTP client: langchain-openai's default one is cached per process and
        # bound to the first event loop, which breaks a second ``asyncio.run`` in a script.
        self._http = async_client(
            max_connections=max(concurrency, 1) * 2,
            timeout=max((e.timeout for e in endpoints.values()), default=60.0),
        )
        # For `auto`: the strategy that worked per (base_url, model), learnt by probing.
        self._learnt: dict[tuple[str | None, str], Strategy] = {}

    def endpoint(self, role: str) -> Endpoint:
        return self.endpoints.get(role) or self.endpoints["default"]

    async def _chat(self, role: str, endpoint: Endpoint) -> ChatOpenAI:
        if role not in self._chats:
            base_url = endpoint.base_url
            if endpoint.embedded and base_url is None:
                base_url = await self._embedded_url()
            self._chats[role] = ChatOpenAI(
                model=endpoint.model,
                base_url=base_url,
                api_key=endpoint.api_key or SecretStr("not-needed"),
                timeout=endpoint.timeout,
                max_retries=0,
                http_async_client=self._http,
            )
        return self._chats[role]

    async def _embedded_url(self) -> str:
        if self._start_embedded is None:
            raise LLMFailure("llm_error", "no endpoint configured and no embedded model")
        if self._embedded is None:
            self._embedded = asyncio.ensure_future(self._start_embedded())
        return await asyncio.shield(self._embedded)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _strategies(self, endpoint: Endpoint) -> tuple[Strategy, ...]:
        if endpoint.strategy != "auto":
            return (endpoint.strategy,)  # type: ignore[return-value]
        learnt = self._learnt.get((endpoint.base_url, endpoint.model))
        return (learnt,) if learnt else structured.PROBE_ORDER

    async def call(
        self,
        role: str,
        template: PromptTemplate,
        variables: dict[str, Any],
        schema: type[BaseModel],
        info: CallInfo,
        *,
        seed: int,
        **overrides: Any,
    ) -> BaseModel:
        """Render ``template``, call the role's endpoint and parse the reply into ``schema``.

        Raises LLMFailure when no usable reply came, BudgetExhausted when the budget ran out.
        """
        endpoint = self.endpoint(role)
        if overrides:
            endpoint = replace(endpoint, **overrides)
        messages = template.render(**variables)
        params = {
            "temperature": endpoint.temperature
            if endpoint.temperature is not None
            else template.defaults.get("temperature"),
            "top_p": endpoint.top_p,
            "max_tokens": endpoint.max_tokens or template.defaults.get("max_tokens"),
            "seed": seed,
        }
        params = {k: v for k, v in params.items() if v is not None}
        base = {
            "agent": info.agent,
            "node": info.node,
            "sample_id": info.sample_id,
            "persona_id": info.persona_id,
            "template": template.name,
            "template_hash": template.hash,
            "schema_name": structured.json_schema(schema).get("title"),
            "replay_of": info.replay_of,
            "variables": variables,
        }
        strategies = self._strategies(endpoint)
        probing = len(strategies) > 1
        for index, strategy in enumerate(strategies):
            try:
                result = await self._call_with(
                    role, endpoint, strategy, messages, params, schema, base, probing=probing
                )
            except _Unsupported as exc:
                if index == len(strategies) - 1:
                    raise LLMFailure("llm_error", f"endpoint rejected the request: {exc}") from None
                continue
            if endpoint.strategy == "auto":
                self._learnt[(endpoint.base_url, endpoint.model)] = strategy
            return result
        raise AssertionError("unreachable")

    async def _call_with(
        self,
        role: str,
        endpoint: Endpoint,
        strategy: Strategy,
        messages: list[dict[str, str]],
        params: dict[str, Any],
        schema: type[BaseModel],
        base: dict[str, Any],
        *,
        probing: bool = False,
    ) -> BaseModel:
        """One structured call: requests (each cached by its exact content), parse, repair."""
        messages, options = structured.request_options(strategy, schema, messages)
        trace_params = {**params, **endpoint.public(), "strategy": strategy}
        schema_json = structured.json_schema(schema)
        attempt = 0
        failures = 0
        repaired = False
        while True:
            attempt += 1
            record = CallRecord(
                messages=messages, params=trace_params, status="ok", attempt=attempt, **base
            )
            key = digest(
                {
                    **params,
                    **endpoint.identity(),
                    "strategy": strategy,
                    "messages": messages,
                    "schema": schema_json,
                }
            )
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                raw, record.cache_hit = hit["raw"], True
            else:
                try:
                    raw = await self._request(role, endpoint, messages, params, options, record)
                except _REQUEST_ERRORS as exc:
                    failures += 1
                    # Raises unless the request is to be sent again.
                    self._failed(exc, record, endpoint, failures, probing and attempt == 1)
                    await asyncio.sleep(retry_delay(exc, failures))
                    continue
                if self.cache is not None:
                    # Every reply, parseable or not: a rerun then replays the same repairs.
                    self.cache.set(key, {"raw": raw})
            record.raw_reply = raw
            try:
                result = structured.parse(raw, schema)
            except ParseError as exc:
                record.status, record.error = "parse_error", str(exc)
                self.traces.record_call(record)
                if repaired:
                    raise LLMFailure("unparseable", str(exc)) from None
                repaired = True
                messages = [
                    *messages,
                    {"role": "assistant", "content": raw},
                    structured.repair_message(str(exc)),
                ]
                continue
            record.parsed = result.model_dump(mode="json")
            self.traces.record_call(record)
            return result

    def _failed(
        self,
        exc: Exception,
        record: CallRecord,
        endpoint: Endpoint,
        failures: int,
        first_probe: bool,
    ) -> None:
        """Trace a request that got no reply; raise what it means for the call, unless it
        may be sent again (a retryable error, ``failures`` within ``max_retries``)."""
        if isinstance(
            exc, openai.AuthenticationError | openai.PermissionDeniedError | openai.NotFoundError
        ):
            record.status, record.error = "error", f"{type(exc).__name__}: {exc.message}"
            self.traces.record_call(record)
            where = public_url(endpoint.base_url) or "the OpenAI API"
            raise EndpointError(
                f"{where} refused the request for model {endpoint.model!r}: {exc.message}"
            ) from None
        if isinstance(exc, openai.BadRequestError):
            record.status, record.error = "error", f"bad request: {exc.message}"
            self.traces.record_call(record)
            raise _Unsupported(exc.message) from None
        record.status, record.error = "error", f"{type(exc).__name__}: {exc}"
        self.traces.record_call(record)
        self.budget.refund()  # no reply: nothing was served or paid for
        if isinstance(exc, openai.APITimeoutError):
            self._timed_out(endpoint)
        if first_probe and isinstance(exc, openai.InternalServerError):
            # llama.cpp's server answers an unsupported response_format with a 500.
            raise _Unsupported(str(exc)) from None
        if not isinstance(exc, RETRYABLE) or failures > endpoint.max_retries:
            if (
                isinstance(exc, openai.APIConnectionError)
                and not isinstance(exc, openai.APITimeoutError)
                and endpoint.base_url not in self._answered
            ):
                where = public_url(endpoint.base_url) or "the OpenAI API"
                raise EndpointError(
                    f"cannot reach {where} ({exc}); check the base URL "
                    "(--base-url, models.*.base_url or OPENAI_BASE_URL)"
                ) from None
            raise LLMFailure("llm_error", record.error or "") from None

    def _timed_out(self, endpoint: Endpoint) -> None:
        """Count a timed-out request; say so on the first, stop the run at TIMEOUT_TRIP."""
        count = self._timeouts.get(endpoint.base_url, 0) + 1
        self._timeouts[endpoint.base_url] = count
        where = public_url(endpoint.base_url) or "the OpenAI API"
        if count == 1:
            self._notice(
                f"warning: a request to {where} timed out after {endpoint.timeout:g} s; "
                f"retrying (the run stops after {TIMEOUT_TRIP} timeouts in a row)"
            )
        if count >= TIMEOUT_TRIP:
            raise EndpointError(
                f"{where} did not answer {count} requests in a row within {endpoint.timeout:g} s "
                f"(model {endpoint.model!r}); check that the server is up and not overloaded, "
                "or raise models.*.timeout, then resume the run with --resume"
            )

    async def _request(
        self,
        role: str,
        endpoint: Endpoint,
        messages: list[dict[str, str]],
        params: dict[str, Any],
        options: dict[str, Any],
        record: CallRecord,
    ) -> str:
        """One HTTP request to the endpoint: the raw reply text, its latency and tokens in
        ``record`` (a request that failed: its latency, for ``_failed``)."""
        started = time.perf_counter()
        try:
            self.budget.reserve()
            chat = await self._chat(role, endpoint)
            async with self._limit:
                try:
                    reply: AIMessage = await chat.ainvoke(messages, **params, **options)
                except json.JSONDecodeError as exc:
                    raise MalformedReply(f"the reply body is not JSON: {exc}") from None
        finally:
            record.latency_ms = (time.perf_counter() - started) * 1000
        self._answered.add(endpoint.base_url)
        self._timeouts.pop(endpoint.base_url, None)
        usage: dict[str, Any] = dict(reply.usage_metadata or {})
        self.budget.add_usage(endpoint.model, usage)
        record.prompt_tokens = usage.get("input_tokens")
        record.completion_tokens = usage.get("output_tokens")
        calls = [dict(call) for call in reply.tool_calls]
        return structured.raw_reply(reply.content, calls)


class _Unsupported(Exception):
    """The endpoint refused the request shape (HTTP 400): try the next strategy."""
