"""A fault-injecting HTTP proxy for reliability tests: it sits in front of an
OpenAI-compatible endpoint (the scripted one) on 127.0.0.1 and, request by request, forwards
faithfully or breaks the exchange the ways real servers and networks do.

Faults (``FAULTS``), each applied to one request:

- ``status``: answer ``status`` (5xx, or 429 with ``Retry-After``) without forwarding.
- ``hang``: accept the request and never answer (until the client gives up).
- ``reset``: close the connection without a reply.
- ``truncate``: forward, then send the reply's headers and only the first half of its body.
- ``garbage``: a 200 whose JSON body is not JSON.
- ``slow``: forward, then dribble the reply out a few bytes at a time (``delay`` seconds in all).

``schedule(fault, times)`` queues faults for the next requests; ``rate`` (with a seed) faults
a random share of requests instead, drawn from ``mix``. ``counts`` says what was done.
"""

from __future__ import annotations

import http.client
import random
import socket
import socketserver
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

FAULTS = ("status", "hang", "reset", "truncate", "garbage", "slow")
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway"}
_REASONS |= {503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 503
    retry_after: float | None = None
    delay: float = 2.0


class FaultProxy:
    """``with FaultProxy(upstream_base_url) as proxy:`` then use ``proxy.base_url``."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        mix: tuple[Fault, ...] = (),
        seed: int = 0,
        paths: tuple[str, ...] = ("/chat/completions", "/embeddings"),
    ):
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._prefix: str = str(parts.path).rstrip("/")
        self.rate, self.mix, self.paths = rate, mix, paths
        self._rng = random.Random(seed)
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.counts: Counter[str] = Counter()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self._prefix}"

    def schedule(self, fault: str | Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests (after those already queued)."""
        fault = fault if isinstance(fault, Fault) else Fault(fault)
        if fault.kind not in FAULTS:
            raise ValueError(f"unknown fault {fault.kind!r}; faults are {FAULTS}")
        with self._lock:
            self._queue.extend([fault] * times)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # Called from the server's threads.
    def _next_fault(self, path: str) -> Fault | None:
        if not any(path.split("?")[0].rstrip("/").endswith(p) for p in self.paths):
            return None
        with self._lock:
            if self._queue:
                fault: Fault | None = self._queue.popleft()
            elif self.rate and self.mix and self._rng.random() < self.rate:
                fault = self._rng.choice(self.mix)
            else:
                fault = None
            self.counts[fault.kind if fault else "forwarded"] += 1
        return fault

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """The upstream's whole reply, as raw HTTP/1.1 bytes with ``Connection: close``."""
        conn = http.client.HTTPConnection(self._host, self._port, timeout=300)
        try:
            headers = {k: v for k, v in headers.items() if k.lower() not in _HOP}
            conn.request(method, path, body=body or None, headers=headers)
            reply = conn.getresponse()
            payload = reply.read()
            head = [f"HTTP/1.1 {reply.status} {reply.reason}"]
            head += [f"{k}: {v}" for k, v in reply.getheaders() if k.lower() not in _HOP]
            head += [f"Content-Length: {len(payload)}", "Connection: close"]
            return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
        finally:
            conn.close()


_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _response(status: int, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK' if status == 200 else 'Error')}"]
    head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()] + ["Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up on a fault are the point here: nothing to print."""


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(65537).decode("latin-1").strip()
        if not line:
            return
        method, path, _ = line.split(" ", 2)
        headers: dict[str, str] = {}
        while (header := self.rfile.readline(65537).decode("latin-1").strip()) != "":
            name, _, value = header.partition(":")
            headers[name.strip()] = value.strip()
        size = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
        body = self.rfile.read(size) if size else b""
        proxy = self.server.proxy
        fault = proxy._next_fault(path)
        if fault is None:
            self.wfile.write(proxy._forward(method, path, headers, body))
        elif fault.kind == "status":
            extra = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            error = b'{"error": {"message": "fault proxy: %d", "type": "server_error"}}'
            self.wfile.write(_response(fault.status, error % fault.status, extra))
        elif fault.kind == "hang":
            proxy._stopping.wait(600)  # the client's timeout ends it, or the proxy stopping
        elif fault.kind == "reset":
            self.request.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        elif fault.kind == "garbage":
            self.wfile.write(_response(200, b'{"id": "chatcmpl-1", "choices": [{"mess'))
        else:
            raw = proxy._forward(method, path, headers, body)
            if fault.kind == "truncate":
                head, _, payload = raw.partition(b"\r\n\r\n")
                self.wfile.write(head + b"\r\n\r\n" + payload[: len(payload) // 2])
            else:  # slow: the whole reply, a few bytes at a time
                step = max(1, len(raw) // 50)
                for start in range(0, len(raw), step):
                    self.wfile.write(raw[start : start + step])
                    self.wfile.flush()
                    if proxy._stopping.wait(fault.delay / 50):
                        return
