"""The scripted endpoint's default responder: personaloom's agents, played deterministically.

:class:`PersonaloomResponder` reads a :class:`ChatRequest` (the schema, found whatever way it
came, and the prompt's text) and answers as the persona-miner, persona-relater, writer, critic
or persona-checker would, by the schema's title: same prompt, same reply. It knows nothing of
HTTP; ``personaloom.testing.scripted`` serves it. Stdlib only.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

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
