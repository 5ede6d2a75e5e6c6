"""persona gate: deterministic checks on a mined or related persona before it enters the pool.

Like the critic's deterministic checks for drafts, but for personas. Small models (and real
ones) answer "who would read this?" with a copy of the prompt's example person, the source
text handed back, a fragment of JSON, or a run of timestamps. Such a persona then writes
samples in the pool's name. A description must read as a person (enough words, mostly
letters, no markup), must not be a near-copy of an example in the miner's or relater's prompt
template, and must not be a near-copy of its own source: the corpus text it was mined from,
or the persona it was related to. Near-duplicates of the pool are the novelty check's
(``graphs.personas``); both reasons are in one taxonomy, ``PersonaRejectReason``.

The thresholds were set on real replies of the embedded SmolLM2-135M to one-line package
descriptions and on MiniLM embeddings (``tests/unit/test_persona_gate.py`` holds those
replies); an example or a source text is compared both by embedding and by its words, since
a paraphrase keeps the meaning and a copy with a few words changed keeps the words.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from personaloom.agents.models import PersonaRejectReason
from personaloom.agents.persona_relater import split_relation
from personaloom.diversity import tokenize
from personaloom.prompts import PromptTemplate

MIN_WORDS = 4  # words of two letters or more: "A retired nurse in Lisbon" has four
MIN_LETTER_SHARE = 0.75  # of the characters other than spaces; prose with an age is ~0.9
MAX_TIME_SHARE = 0.25  # of its words that are clock times ("9:54", "7:30am")
EXAMPLE_SIMILARITY = 0.7  # cosine to a prompt example (MiniLM: variants 0.71+, others under 0.6)
EXAMPLE_OVERLAP = 0.5  # Jaccard of content words with a prompt example
SOURCE_SIMILARITY = 0.85  # cosine to the source text or parent persona (copies 0.87+)
SOURCE_COPIED = 0.6  # share of its words in runs (2+ words) copied from the source

_MARKUP = re.compile(r"[{}\[\]<>\\`]|https?:|www\.|\w\.(?:com|org|net|io)\b")
_TIME = re.compile(r"^\W*\d{1,2}(?::\d{2})?(?:am|pm|[ap]\.m\.|h|m)?\W*$", re.IGNORECASE)
_CLOCK = re.compile(r"\d:\d{2}|\d\s*(?:am|pm)\b", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"{}]+)"')
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have he her his i in is it its of on or she so "
    "that the their them they this to was who whom whose with".split()
)
# The roles whose templates hold example personas the gate compares against.
EXAMPLE_ROLES = ("persona_miner", "persona_relater")


@dataclass(frozen=True)
class GateFinding:
    """Why a persona stays out of the pool: the reason and a sentence a person can check."""

    reason: PersonaRejectReason
    details: str


def words(text: str) -> list[str]:
    """What counts towards a description's length: the pieces between spaces that hold two
    letters or more and no digit (so a URL or a dotted path is one word, "19am" none)."""
    return [
        piece
        for piece in text.split()
        if sum(c.isalpha() for c in piece) > 1 and not any(c.isdigit() for c in piece)
    ]


def content_words(text: str) -> set[str]:
    return {t for t in tokenize(text) if t not in _STOPWORDS}


def shape_finding(text: str) -> GateFinding | None:
    """Whether ``text`` reads as a description at all: no markup or JSON, not a run of clock
    times, mostly letters, and enough words."""
    if match := _MARKUP.search(text):
        return GateFinding(
            PersonaRejectReason.NOT_PROSE,
            f"markup, JSON or a URL, not a sentence ({match.group()!r})",
        )
    pieces = text.split()
    times = sum(bool(_TIME.match(p) and _CLOCK.search(p)) for p in pieces)
    if pieces and times / len(pieces) >= MAX_TIME_SHARE:
        return GateFinding(PersonaRejectReason.NOT_PROSE, f"{times} clock times, not a sentence")
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible) / len(visible) if visible else 0.0
    if letters < MIN_LETTER_SHARE:
        return GateFinding(
            PersonaRejectReason.NOT_PROSE, f"mostly not letters ({letters:.0%} letters)"
        )
    count = len(words(text))
    if count < MIN_WORDS:
        return GateFinding(
            PersonaRejectReason.TOO_SHORT, f"{count} words; a description needs {MIN_WORDS}"
        )
    return None


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def copied_share(text: str, source: str) -> float:
    """Share of ``text``'s tokens that sit in runs of two or more tokens copied from
    ``source``: 1.0 for a source handed back, low for a persona that names its topic."""
    mine, theirs = tokenize(text), tokenize(source)
    if not mine:
        return 0.0
    matcher = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
    copied = sum(block.size for block in matcher.get_matching_blocks() if block.size >= 2)
    return copied / len(mine)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb) / norm if norm else 0.0


def prompt_examples(templates: Iterable[PromptTemplate]) -> list[str]:
    """The example personas in prompt templates: every quoted sentence of four words or more
    (a ``relation:`` prefix dropped), as in ``A good description looks like "..."``."""
    found: dict[str, None] = {}
    for template in templates:
        for quoted in _QUOTED.findall(template.body):
            text = split_relation(quoted)[1]
            if len(words(text)) >= MIN_WORDS:
                found[text] = None
    return list(found)


class PersonaGate:
    """The gate of one run: the example personas of its templates and their embeddings.

    ``vectors`` may be a function that embeds the examples: it is called once, for the first
    persona checked, so a session that mines nothing never asks the embedder (and a run whose
    endpoint is down fails on its first real request, with that request's error)."""

    def __init__(
        self,
        examples: list[str],
        vectors: Sequence[Sequence[float]] | Callable[[], Sequence[Sequence[float]]],
    ):
        self.examples = examples
        self._vectors = vectors
        self._words = [content_words(e) for e in examples]

    @functools.cached_property
    def vectors(self) -> list[Sequence[float]]:
        return list(self._vectors() if callable(self._vectors) else self._vectors)

    def example_finding(self, text: str, vector: Sequence[float]) -> GateFinding | None:
        mine = content_words(text)
        for example, example_vector, theirs in zip(
            self.examples, self.vectors, self._words, strict=True
        ):
            similarity, overlap = cosine(vector, example_vector), jaccard(mine, theirs)
            if similarity >= EXAMPLE_SIMILARITY or overlap >= EXAMPLE_OVERLAP:
                return GateFinding(
                    PersonaRejectReason.PROMPT_EXAMPLE,
                    f'a near-copy of the prompt\'s example "{example}" '
                    f"(similarity {similarity:.2f}, word overlap {overlap:.2f})",
                )
        return None

    @staticmethod
    def source_finding(
        text: str, vector: Sequence[float], source: str, source_vector: Sequence[float], what: str
    ) -> GateFinding | None:
        """``what`` names the source in the details: "its source text", "its parent pXXX"."""
        similarity, copied = cosine(vector, source_vector), copied_share(text, source)
        if similarity >= SOURCE_SIMILARITY or copied >= SOURCE_COPIED:
            return GateFinding(
                PersonaRejectReason.SOURCE_COPY,
                f"a near-copy of {what} (similarity {similarity:.2f}, {copied:.0%} copied)",
            )
        return None

    def similarity_finding(
        self,
        text: str,
        vector: Sequence[float],
        source: str,
        source_vector: Sequence[float] | None,
        what: str = "its source text",
    ) -> GateFinding | None:
        """The rules that need embeddings: a prompt example's copy, then the source's (none
        for a persona read from a pool file)."""
        if not source or source_vector is None:
            return self.example_finding(text, vector)
        return self.example_finding(text, vector) or self.source_finding(
            text, vector, source, source_vector, what
        )

    def check(
        self,
        text: str,
        vector: Sequence[float],
        source: str,
        source_vector: Sequence[float],
        what: str = "its source text",
    ) -> GateFinding | None:
        """Every rule in order; None when the persona may enter the pool."""
        return shape_finding(text) or self.similarity_finding(
            text, vector, source, source_vector, what
        )
