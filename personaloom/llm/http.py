"""The HTTP client under langchain-openai's: httpx's interface over aiohttp's transport.

This is what openai's SDK offers as ``DefaultAioHttpClient`` (its ``aiohttp`` extra, the
httpx-aiohttp package): aiohttp parses HTTP in C where httpx's own transport (httpcore, h11,
anyio) does it in Python, which on this machine cut personaloom's CPU per accepted sample by
about 1.3 ms of 16 (docs/benchmarks.md#engines). The client above it, and so everything
langchain-openai and the SDK do with it (timeouts, retries, error types), stays httpx's.

One correction: httpx-aiohttp maps a refused connection, and one the server dropped, to
``httpx.ConnectTimeout``. Those are not timeouts here: a refused connection means a wrong base
URL ("cannot reach ..."), and timeouts count towards stopping the run (``TIMEOUT_TRIP``). So
``_Transport`` raises ``httpx.ConnectError`` and ``httpx.ReadError`` for them, as httpx's own
transport does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def _corrected(exc: httpx.TransportError) -> httpx.TransportError:
    """``exc``, or the error httpx's own transport raises for what aiohttp raised."""
    cause = exc.__cause__
    if (
        not isinstance(exc, httpx.TimeoutException)
        or not isinstance(cause, aiohttp.ClientConnectionError)
        or isinstance(cause, aiohttp.ServerTimeoutError)  # a real timeout
    ):
        return exc
    refused = isinstance(cause, aiohttp.ClientConnectorError)
    return (httpx.ConnectError if refused else httpx.ReadError)(str(exc))


class _Stream(httpx.AsyncByteStream):
    """A response body whose read errors are corrected too (a connection dropped mid-body)."""

    def __init__(self, inner: httpx.AsyncByteStream):
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            raise _corrected(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Transport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx.TransportError as exc:
            raise _corrected(exc) from exc.__cause__
        response.stream = _Stream(response.stream)  # type: ignore[arg-type]
        return response


def async_client(*, max_connections: int, timeout: float) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` on aiohttp; it opens its aiohttp session on first use, in
    the event loop it then belongs to, and ``aclose`` closes it."""
    limits = httpx.Limits(max_connections=max_connections)
    return httpx.AsyncClient(transport=_Transport(limits=limits), timeout=timeout)
