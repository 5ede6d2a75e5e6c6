"""A scripted OpenAI-compatible server on loopback, for tests.

Tests go through the real ``openai`` and ``langchain-openai`` clients (retries, timeouts,
parsing and all) instead of mocking them, so the server speaks the wire format: chat
completions with the four ways a schema can travel (``json_schema``, llama.cpp's
``json_object`` + ``schema``, tool calling, or the schema in the prompt), embeddings and the
model list. Faults (error statuses with ``Retry-After``, slow replies, garbage, empty replies)
are queued per request. Replies come from a ``Responder``; the default one,
:class:`PersonaloomResponder` (``personaloom.testing.responder``, re-exported here), plays
personaloom's agents deterministically. Stdlib only.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import random
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from personaloom.testing.responder import ChatRequest, PersonaloomResponder, Responder

__all__ = [
    "EMBEDDING_DIM",
    "FAULTS",
    "GARBAGE",
    "ChatRequest",
    "PersonaloomResponder",
    "Responder",
    "ScriptedEndpoint",
    "embed",
    "lognormal_latency",
    "parse_chat",
]

EMBEDDING_DIM = 384
FAULTS = ("status", "timeout", "garbage", "empty")
GARBAGE = "I cannot help with that."
_STOPWORDS = frozenset(
    "a an and are as at be by for from had has have i in is it its my of on or so that the "
    "their they this to was we were with".split()
)


def embed(text: str) -> list[float]:
    """Hashed bag of content words, L2-normalised: texts sharing most words are close."""
    vector = [0.0] * EMBEDDING_DIM
    tokens = [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _STOPWORDS]
    for token in tokens or ["<empty>"]:
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
        vector[h % EMBEDDING_DIM] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _flatten(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def _schema_in_text(text: str) -> dict[str, Any] | None:
    """The last JSON object in ``text`` that is (or wraps) a schema, i.e. has ``properties``."""
    decoder, found, index = json.JSONDecoder(), None, text.find("{")
    while index != -1:
        try:
            obj, end = decoder.raw_decode(text, index)
        except ValueError:
            index = text.find("{", index + 1)
            continue
        if isinstance(obj, dict):
            nested = [obj.get(key) for key in ("schema", "json_schema", "parameters")]
            candidates = (c for c in (obj, *nested) if isinstance(c, dict) and "properties" in c)
            found = next(candidates, found)
        index = text.find("{", end)
    return found


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    """Find the schema and its title in any of the four transports."""
    messages = [
        {"role": str(m.get("role", "user")), "content": _flatten(m.get("content"))}
        for m in body.get("messages") or []
    ]
    text = "\n".join(m["content"] for m in messages)
    fmt, tools = body.get("response_format") or {}, body.get("tools") or []
    schema: dict[str, Any] | None = None
    title = tool = None
    transport = "prompt"
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema, transport = spec.get("schema"), "json_schema"
        title = (schema or {}).get("title") or spec.get("name")
    elif fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict):
        schema, transport = fmt["schema"], "json_object"
        title = schema.get("title")
    elif tools and body.get("tool_choice") != "none":
        choice = body.get("tool_choice")
        wanted = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        functions = [t.get("function", {}) for t in tools]
        function = next((f for f in functions if f.get("name") == wanted), functions[0])
        schema, tool, transport = function.get("parameters"), function.get("name"), "tools"
        title = (schema or {}).get("title") or tool
    if schema is None:  # the "prompt" strategy: the schema is somewhere in the text
        schema = _schema_in_text(text)
        titles = re.findall(r'"title":\s*"(\w+)"', text)  # the top-level title comes last
        title = (schema or {}).get("title") or (titles[-1] if titles else None)
    return ChatRequest(title, schema, messages, text, body.get("seed"), body, transport, tool)


@dataclass(frozen=True)
class _Fault:
    kind: str
    status: int = 429
    retry_after: float | None = None
    delay: float = 0.0


def _error(status: int, message: str) -> dict[str, Any]:
    kinds = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}
    kind = kinds.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


def lognormal_latency(
    median: float, p95: float, seed: int = 0
) -> Callable[[dict[str, Any]], float]:
    """Seconds drawn from a lognormal with this median and 95th percentile: the long tail of a
    real endpoint (a few requests take many times the median)."""
    sigma = math.log(p95 / median) / 1.6448536269514722
    rng, lock = random.Random(seed), threading.Lock()

    def draw(body: dict[str, Any]) -> float:
        with lock:
            return rng.lognormvariate(math.log(median), sigma)

    return draw


class ScriptedEndpoint:
    """An OpenAI-compatible server on 127.0.0.1, on a free port; use it as a context manager.

    ``latency`` seconds are slept per chat request (requests overlap: the server is threaded):
    a number, or a function of the request's JSON body (``lognormal_latency``).
    ``unsupported`` names transports ("json_schema", "json_object", "tools") answered with a
    400, as llama.cpp's server does for ``json_schema``, to exercise strategy probing.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float | Callable[[dict[str, Any]], float] = 0.0,
        unsupported: Collection[str] = (),
    ):
        self.responder: Responder = responder or PersonaloomResponder()
        self.latency = latency
        self.unsupported = frozenset(unsupported)
        self.requests: list[dict[str, Any]] = []
        self._faults: deque[_Fault] = deque()
        self._embedding_faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ScriptedEndpoint:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; handlers still sleeping (latency, timeout faults) wake up and end."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping for latency or a timeout fault
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedEndpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("ScriptedEndpoint is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def chat_calls(self) -> int:
        return sum(r["path"].endswith("/chat/completions") for r in list(self.requests))

    @property
    def embedding_calls(self) -> int:
        return sum(r["path"].endswith("/embeddings") for r in list(self.requests))

    def reset_counts(self) -> None:
        """Forget logged requests (the counts derive from them); queued faults stay queued."""
        with self._lock:
            self.requests.clear()

    def inject(
        self,
        fault: str,
        *,
        times: int = 1,
        status: int = 429,
        retry_after: float | None = None,
        delay: float = 0.0,
        embeddings: bool = False,
    ) -> None:
        """Queue ``fault`` for the next ``times`` chat requests (with ``embeddings``, the
        next embeddings requests: only ``status`` faults), after those already queued."""
        if fault not in FAULTS or (embeddings and fault != "status"):
            raise ValueError(f"unknown fault {fault!r}; faults are {FAULTS}")
        with self._lock:
            queue = self._embedding_faults if embeddings else self._faults
            queue.extend([_Fault(fault, status, retry_after, delay)] * times)

    # Called from the server's threads.
    def _record(self, path: str, body: Any, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append({"path": path, "body": body, "headers": headers})

    def _chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        latency = self.latency(body) if callable(self.latency) else self.latency
        pause = latency + (fault.delay if fault and fault.kind == "timeout" else 0.0)
        if pause > 0:
            self._stopping.wait(pause)
        if fault and fault.kind == "status":
            retry = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return fault.status, _error(fault.status, f"scripted fault {fault.status}"), retry
        if body.get("stream"):
            return 400, _error(400, "streaming is not scripted; send stream=false"), {}
        request = parse_chat(body)
        if request.transport in self.unsupported:
            return 400, _error(400, f"{request.transport} is not supported here"), {}
        if fault and fault.kind in ("garbage", "empty"):
            content = GARBAGE if fault.kind == "garbage" else ""
            return 200, self._completion(request, content, None), {}
        try:
            reply = self.responder(request)
            content = reply if isinstance(reply, str) else json.dumps(reply, ensure_ascii=False)
        except Exception as exc:  # a responder bug shows up in the test, not on stderr
            return 500, _error(500, f"responder failed: {exc!r}"), {}
        return 200, self._completion(request, content, request.tool), {}

    def _completion(self, request: ChatRequest, content: str, tool: str | None) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool is not None:
            call = {"id": f"call_{number}", "type": "function"}
            call["function"] = {"name": tool, "arguments": content}  # type: ignore[assignment]
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        usage = {
            "prompt_tokens": len(request.text.split()),
            "completion_tokens": len(content.split()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        finish = "tool_calls" if tool else "stop"
        return {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.body.get("model") or "scripted",
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": usage,
        }

    def _embeddings_reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            fault = self._embedding_faults.popleft() if self._embedding_faults else None
        if fault is not None:
            retry = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return fault.status, _error(fault.status, f"scripted fault {fault.status}"), retry
        return 200, self._embeddings(body), {}

    @staticmethod
    def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input") or []
        if isinstance(inputs, str) or isinstance(inputs[0], int):
            inputs = [inputs]
        # Token ids (langchain's context-length check) become pseudo-words: still deterministic.
        texts = [t if isinstance(t, str) else " ".join(f"t{i}" for i in t) for t in inputs]
        vectors: list[Any] = [embed(text) for text in texts]
        if body.get("encoding_format") == "base64":  # what the openai client asks for by default
            vectors = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        tokens = sum(len(text.split()) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {
            "object": "list",
            "data": data,
            "model": body.get("model") or "scripted",
            "usage": usage,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler sleeping on a timeout fault must not block stop()

    def __init__(self, endpoint: ScriptedEndpoint):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.endpoint = endpoint

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts) are expected here: nothing to print."""


_MODELS = {
    "object": "list",
    "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "personaloom"}],
}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one connection per request, so no kept-alive connection outlives stop().
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output stays readable."""

    def do_GET(self) -> None:
        self._route(None)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None  # answered with a 400 below
        self._route(body)

    def _route(self, body: Any) -> None:
        endpoint, path = self.server.endpoint, self.path.split("?")[0].rstrip("/")
        endpoint._record(self.path, body, dict(self.headers))
        if self.command == "POST" and not isinstance(body, dict):
            self._send(400, _error(400, "the body must be a JSON object"))
        elif self.command == "POST" and path.endswith("/chat/completions"):
            self._send(*endpoint._chat(body))
        elif self.command == "POST" and path.endswith("/embeddings"):
            self._send(*endpoint._embeddings_reply(body))
        elif self.command == "GET" and path.endswith("/models"):
            self._send(200, _MODELS)
        else:
            self._send(404, _error(404, f"no route {self.command} {self.path}"))

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout fault): nothing to answer
            self.close_connection = True
