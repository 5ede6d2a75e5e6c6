"""A scripted OpenAI-compatible server on loopback, for tests.

Tests go through the real ``openai`` and ``langchain-openai`` clients (retries, timeouts,
parsing and all) instead of mocking them, so the server speaks the wire format: chat
completions with the four ways a schema can travel (``json_schema``, llama.cpp's
``json_object`` + ``schema``, tool calling, or the schema in the prompt), embeddings and the
model list. Faults (error statuses with ``Retry-After``, slow replies, garbage, empty replies)
are queued per request. Replies come from a ``Responder``; the default one,
:class:`PersonaloomResponder`, plays personaloom's agents deterministically. Stdlib only.
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
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EMBEDDING_DIM = 384
FAULTS = ("status", "timeout", "garbage", "empty")
GARBAGE = "I cannot help with that."

# Word pools. Small enough to read, big enough that two random texts share few content words.
_AGES = (
    "teenage|twenty-something|30-something|40-something|50-something|60-something|"
    "recently retired|80-year-old"
).split("|")
_JOBS = (
    "marine biologist|school nurse|long-haul truck driver|pastry chef|tax accountant|beekeeper|"
    "night-shift paramedic|chemistry teacher|freelance translator|dairy farmer|museum curator|"
    "software tester|bus mechanic|union organiser|wedding photographer|hospice chaplain|"
    "bicycle courier|structural engineer|community librarian|retired diplomat|tattoo artist|"
    "vineyard owner|air-traffic controller|speech therapist|estate agent|games designer|"
    "prison guard|organic grocer|jazz bassist|hotel receptionist"
).split("|")
_CITIES = (
    "Lisbon Nairobi Osaka Glasgow Montreal Hanoi Tromso Marseille Lagos Adelaide Krakow "
    "Tucson Cork Chennai Valparaiso Tbilisi Winnipeg Seville Busan Reykjavik"
).split()
_CONCERNS = (
    "worries about coral bleaching|cares about fair pay for night shifts|wants their children "
    "to read more|fights rising rents in their street|loves restoring old radios|fears losing "
    "their job to automation|campaigns for safer cycling lanes|collects recipes from their "
    "grandmother|is learning a third language|volunteers at a food bank|is saving to open a "
    "small bakery|distrusts big pharmaceutical companies|trains for a first marathon|looks "
    "after an ailing parent|plays chess online every night|writes letters to local "
    "newspapers|grows tomatoes on a tiny balcony|studies the history of their town|wants "
    "cleaner rivers|keeps bees and worries about pesticides"
).split("|")
_RELATIONS = (
    "patient colleague supplier child teacher neighbour friend mentor client sibling landlord "
    "student"
).split()
_ADJ = (
    "quiet bright narrow crooked golden muddy tender restless ancient hollow brittle crimson "
    "dusty gentle stubborn silver humid frozen patient noisy velvet rusty bitter sweet lonely "
    "curious clumsy fierce faded glossy wild tidy sleepy hungry proud shy clever swift heavy "
    "pale warm salty windy thin loyal"
).split()
_NOUNS = (
    "lantern harbour kettle orchard ladder violin meadow bridge pocket compass window garden "
    "river tram blanket notebook chimney market bicycle island mirror tunnel engine candle "
    "basket fence pebble attic ferry whistle kitchen library saddle anchor quarry wagon clock "
    "forest staircase ribbon barrel cellar lighthouse puddle cathedral scarf teapot workshop "
    "hillside postcard umbrella sparrow tractor"
).split()
_VERBS = (
    "whispered wandered rattled drifted glowed tumbled shivered lingered waited sparkled "
    "creaked hummed vanished returned trembled wobbled floated crumbled flickered stumbled "
    "gleamed sighed hurried paused shimmered clattered rested swayed"
).split()
_TIMES = "morning evening winter spring Sunday dawn midnight harvest noon autumn".split()
_TEMPLATES = (
    "The {a} {n} {v} near the {m}.",
    "I remember how a {a} {n} {v} every {t}.",
    "Nobody expected the {n} by the {m} to be so {a}.",
    "By {t} the {a} {n} had {v} past the {m}.",
    "Somewhere behind the {n}, a {a} {m} {v}.",
    "My {n} {v} while the {a} {m} waited for {t}.",
    "It felt {a}, like a {n} that {v} in the {m}.",
    "Every {t} we passed the {a} {n} and the old {m}.",
)
_CONNECTORS = ("with", "thinking of", "because of", "along with", "beside")
_STOPWORDS = frozenset(
    "a an and are as at be by for from had has have i in is it its my of on or so that the "
    "their they this to was we were with".split()
)


@dataclass(frozen=True)
class ChatRequest:
    """One chat request as a responder sees it: the schema found, whatever way it came."""

    title: str | None
    schema: dict[str, Any] | None
    messages: list[dict[str, str]]
    text: str  # all message contents, joined with newlines
    seed: int | None
    body: dict[str, Any]
    transport: str = "prompt"  # json_schema | json_object | tools | prompt
    tool: str | None = None  # the function to call back when the schema came as a tool


Responder = Callable[[ChatRequest], "dict[str, Any] | str"]


def _int_hash(*parts: object) -> int:
    """A process-independent hash (Python's ``hash`` is salted per process)."""
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest(), 16)


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


def _between(text: str, tag: str) -> str:
    match = re.search(rf"<{tag}>\s*(.*?)\s*</{tag}>", text, re.DOTALL)
    return match.group(1) if match else text


def _fields_line(text: str) -> list[str]:
    """Field names from "Reply as JSON with the fields: a, b." (when no schema was found)."""
    match = re.search(r"Reply as JSON with the fields: (.+?)\.?\s*$", text, re.MULTILINE)
    return [f.strip() for f in match.group(1).split(",")] if match else []


def _kind(prop: dict[str, Any]) -> str:
    for option in prop.get("anyOf", []):  # Optional[X] -> X
        if option.get("type") != "null":
            return _kind(option)
    kind = prop.get("type", "string")
    return next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind


class PersonaloomResponder:
    """Plays personaloom's agents, dispatching on the schema title; same prompt, same reply.

    ``duplicate_every=k``: every k-th writer request returns one fixed text (still with the
    required words) to provoke near-duplicates. ``omit_words_every=k``: every k-th writer
    request leaves the required words out, to provoke revisions. ``accept_rate``: the chance,
    per trait value (or for all), that the critic confirms a trait. ``implausible``: words
    that make the persona-checker answer false for a description holding one of them.
    """

    def __init__(
        self,
        *,
        duplicate_every: int | None = None,
        omit_words_every: int | None = None,
        score: int = 4,
        accept_rate: dict[str, float] | float = 1.0,
        implausible: Collection[str] = (),
    ):
        self.duplicate_every = duplicate_every
        self.omit_words_every = omit_words_every
        self.score = score
        self.accept_rate = accept_rate
        self.implausible = tuple(implausible)
        self.calls: Counter[str | None] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> dict[str, Any] | str:
        with self._lock:
            self.calls[request.title] += 1
            count = self.calls[request.title]
        if request.title == "PersonaList":
            return self._mine(request)
        if request.title == "RelatedPersonaList":
            return self._relate(request)
        if request.title == "Record":
            return self._write(request, count)
        if request.title == "CriticReview":
            return self._review(request)
        if request.title == "PersonaCheck":
            return self._check(request)
        return {}

    # persona-miner and persona-relater: people built from a hash of the source text
    @staticmethod
    def _count(text: str) -> int:
        match = re.search(r"Describe (\d+|one) ", text)
        if not match:
            return 3
        return 1 if match.group(1) == "one" else int(match.group(1))

    @staticmethod
    def _person(key: str, index: int, offset: int) -> str:
        """The job rotates with a stride prime to 30, so one reply never repeats a job."""
        h = _int_hash(key, index)
        age, job = _AGES[h % len(_AGES)], _JOBS[(offset + 7 * index) % len(_JOBS)]
        city, concern = _CITIES[(h >> 8) % len(_CITIES)], _CONCERNS[(h >> 16) % len(_CONCERNS)]
        return f"{'An' if age[0] in 'aeiou8' else 'A'} {age} {job} in {city} who {concern}."

    def _mine(self, request: ChatRequest) -> dict[str, Any]:
        source = _between(request.text, "text")
        match = re.search(r"Who is likely to (\w+)", request.text)
        key = f"{source}|{match.group(1) if match else 'read'}|{request.seed}"
        topics = sorted(set(re.findall(r"[A-Za-z]{5,}", source)), key=lambda w: (-len(w), w))
        personas = []
        for i in range(self._count(request.text)):
            persona = self._person(key, i, _int_hash(key))
            if topics:  # detailed texts give detailed personas
                persona += f" Lately they keep thinking about {topics[i % len(topics)].lower()}."
            personas.append(persona)
        return {"personas": self._labelled(request, personas)}

    def _relate(self, request: ChatRequest) -> dict[str, Any]:
        source = _between(request.text, "persona")
        key, first = f"{source}|{request.seed}", source.split(".")[0].split()
        ref = " ".join(first[:6]).lower() if first else "them"
        personas = []
        for i in range(self._count(request.text)):
            relation = _RELATIONS[(_int_hash(key) + 5 * i) % len(_RELATIONS)]
            person = self._person(key, i, _int_hash(key) >> 64)[:-1]
            personas.append(f"{relation}: {person}, {relation} of {ref}.")
        return {"personas": self._labelled(request, personas)}

    @staticmethod
    def _labelled(request: ChatRequest, personas: list[str]) -> list[Any]:
        """Persona traits asked for (items with enum fields): a label per persona, fixed by
        a hash of its text."""
        schema = request.schema or {}
        item = ((schema.get("properties") or {}).get("personas") or {}).get("items") or {}
        if "$ref" in item:
            item = (schema.get("$defs") or {}).get(item["$ref"].rsplit("/", 1)[-1], {})
        props = item.get("properties") or {}
        if not props:
            return personas
        return [
            {
                "persona": text,
                **{
                    name: prop["enum"][_int_hash(text, name) % len(prop["enum"])]
                    for name, prop in props.items()
                    if "enum" in prop
                },
            }
            for text in personas
        ]

    def _check(self, request: ChatRequest) -> dict[str, Any]:
        """persona-checker: true for every description, unless it holds an implausible word."""
        personas = re.findall(r"<persona>\s*(.*?)\s*</persona>", request.text, re.DOTALL)
        return {"plausible": [not any(w in p for w in self.implausible) for p in personas]}

    # writer
    def _write(self, request: ChatRequest, count: int) -> dict[str, Any]:
        text = request.text
        words_line = re.search(r"^It must use the words (.+)$", text, re.MULTILINE)
        words = re.findall(r'"([^"]+)"', words_line.group(1)) if words_line else []
        lines = re.findall(r"^Its [\w-]+(?: \(.*\))?: (.+)\.$", text, re.MULTILINE)
        if self.omit_words_every and count % self.omit_words_every == 0:
            words = []
        items = list(dict.fromkeys(words + [self._trait_value(line) for line in lines]))
        retry = "too similar to this existing one" in text  # novelty feedback: write anew
        persona = re.search(r"You are (.*)", text)
        rng = random.Random(
            _int_hash(request.seed, persona.group(1) if persona else "", _int_hash(text), retry)
        )
        if self.duplicate_every and count % self.duplicate_every == 0 and not retry:
            rng, sentences = random.Random(0), 10  # the fixed text, word for word each time
        else:
            sentences = self._sentences(text, rng.randint(3, 6))
        props = (request.schema or {}).get("properties") or {
            name: {"type": "string"} for name in _fields_line(text)
        }
        body = self._body_fields(props)
        return {
            name: self._fill(name, prop, rng, items if name in body else [], sentences)
            for name, prop in props.items()
        }

    @staticmethod
    def _sentences(text: str, sentences: int) -> int:
        """Sentences to write within a ``Length:`` line's word limits (7-14 words each)."""
        line = re.search(r"^Length: (.*)$", text, re.MULTILINE)
        limits = [int(n) for n in re.findall(r"\d+", line.group(1))] if line else []
        floor_only = bool(line and re.search(r"least|min|more than", line.group(1)))
        if limits and not (floor_only and len(limits) == 1):
            sentences = min(sentences, max(1, max(limits) // 14))
        if len(limits) > 1 or (limits and floor_only):
            sentences = max(sentences, math.ceil(min(limits) / 7))
        return sentences

    @staticmethod
    def _trait_value(line: str) -> str:
        """``forest (where it happens)`` -> ``forest``: drop the trait's description."""
        line, cut = line.strip(), line.strip().find(" (")
        return line[:cut] if line.endswith(")") and cut > 0 else line

    @staticmethod
    def _body_fields(props: dict[str, Any]) -> set[str]:
        """The fields that carry the required words: prose, else string lists, else titles."""
        strings = {n for n, p in props.items() if _kind(p) == "string" and "enum" not in p}
        prose = {n for n in strings if "title" not in n.lower()}
        lists = {
            n
            for n, p in props.items()
            if _kind(p) == "array" and _kind(p.get("items") or {}) == "string"
        }
        return prose or lists or strings

    def _fill(
        self,
        name: str,
        prop: dict[str, Any],
        rng: random.Random,
        items: list[str],
        sentences: int,
    ) -> Any:
        kind = _kind(prop)
        if "enum" in prop:
            return rng.choice(prop["enum"])
        if kind == "integer":
            return rng.randint(1, 100)
        if kind == "number":
            return round(rng.uniform(1, 100), 2)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "object":
            return {}
        if kind == "array":
            return [self._prose(rng, items if i == 0 else [], 1) for i in range(rng.randint(2, 4))]
        if "title" in name.lower():
            title = " ".join(rng.choice(_ADJ + _NOUNS) for _ in range(rng.randint(3, 6)))
            return " ".join([title.title(), *items])
        return self._prose(rng, items, sentences)

    @staticmethod
    def _prose(rng: random.Random, items: list[str], count: int) -> str:
        sentences = []
        for _ in range(count):
            slots = {"a": _ADJ, "n": _NOUNS, "m": _NOUNS, "v": _VERBS, "t": _TIMES}
            template = rng.choice(_TEMPLATES)
            sentences.append(template.format(**{k: rng.choice(v) for k, v in slots.items()}))
        for item in items:  # weave each required word or trait value into some sentence
            i = rng.randrange(len(sentences))
            sentences[i] = f"{sentences[i][:-1]}, {rng.choice(_CONNECTORS)} {item}."
        return " ".join(sentences)

    # critic
    def _review(self, request: ChatRequest) -> dict[str, Any]:
        draft, text = _between(request.text, "draft"), request.text
        asked = dict(re.findall(r'^- (has_\w+): does it have .*? "(.*)"\?\s*$', text, re.M))
        props = (request.schema or {}).get("properties") or dict.fromkeys(_fields_line(text))
        verdict = {f: self._confirms(draft, asked.get(f)) for f in props if f.startswith("has_")}
        missing = [asked[f] for f, ok in verdict.items() if not ok]
        feedback = (
            f"It does not clearly show {', '.join(missing)}; make that explicit."
            if missing
            else "Clear and complete; it does the task."
        )
        return {"score": self.score, "feedback": feedback, **verdict}

    def _confirms(self, draft: str, value: str | None) -> bool:
        """A coin flip fixed per (draft, value): the same draft always gets the same verdict."""
        if value is None:
            return True
        rates = self.accept_rate
        rate = rates.get(value, 1.0) if isinstance(rates, dict) else rates
        return random.Random(_int_hash(draft, value)).random() < rate


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
