"""The HTTP client on aiohttp (personaloom/llm/http.py) fails as httpx's own transport does:
a refused or dropped connection is a connection error, only a silent server a timeout (the
run tells "cannot reach" from timeouts, and stops after timeouts in a row)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import openai
import pytest

from personaloom.llm.http import async_client
from personaloom.testing.scripted import ScriptedEndpoint


def _ask(base_url: str, timeout: float = 5.0) -> str:
    async def ask() -> str:
        http = async_client(max_connections=4, timeout=timeout)
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", http_client=http, max_retries=0)
        try:
            reply = await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "Say hi."}]
            )
            return reply.choices[0].message.content or ""
        finally:
            await http.aclose()

    return asyncio.run(ask())


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield server, f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    finally:
        server.close()


def test_a_reply_comes_through() -> None:
    with ScriptedEndpoint() as endpoint:
        assert _ask(endpoint.base_url)


def test_a_refused_connection_is_a_connection_error_not_a_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(openai.APIConnectionError) as failure:
        _ask(f"http://127.0.0.1:{port}/v1")
    assert not isinstance(failure.value, openai.APITimeoutError)


def _answer_once(server: socket.socket, reply: bytes) -> None:
    """Accept one request, send ``reply`` (all the server will say) and hang up."""

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(reply)
        conn.close()

    threading.Thread(target=answer, daemon=True).start()


@pytest.mark.parametrize(
    "reply",
    [
        b"",  # the connection dropped before any reply
        b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"id": ',  # a body cut short
    ],
    ids=["dropped", "cut-short"],
)
def test_a_broken_connection_is_a_connection_error_not_a_timeout(listener, reply) -> None:
    server, url = listener
    _answer_once(server, reply)
    with pytest.raises(openai.APIConnectionError) as failure:
        _ask(url)
    assert not isinstance(failure.value, openai.APITimeoutError)


def test_a_silent_server_is_a_timeout(listener) -> None:
    server, url = listener
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    with pytest.raises(openai.APITimeoutError):
        _ask(url, timeout=0.3)
    for conn in held:
        conn.close()
