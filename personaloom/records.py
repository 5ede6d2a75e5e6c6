"""What a sample's record says, as every layer reads it: its text fields, its main text and
its opening (the critic, the novelty check, the report, export and mix all agree on these),
and why a draft or a persona was turned away."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from personaloom.spec import Spec

WORD = re.compile(r"[A-Za-z0-9']+")


def text_parts(spec: Spec, record: dict[str, Any]) -> list[str]:
    """The record's text fields, a list field item by item."""
    parts: list[Any] = []
    for name in spec.text_fields():
        value = record.get(name)
        parts.extend(value if isinstance(value, list) else [value or ""])
    return [str(p) for p in parts]


def text_of(spec: Spec, record: dict[str, Any]) -> str:
    """The record's text fields joined: what word and length checks and embeddings see."""
    return "\n".join(text_parts(spec, record))


def main_text(spec: Spec, record: dict[str, Any]) -> str:
    """The main text field (a story, not its title), or every text field when there is none:
    what openings and the report's diversity measures read."""
    name = spec.main_text_field()
    return str(record.get(name) or "") if name else text_of(spec, record)


def opening(spec: Spec, record: dict[str, Any]) -> str:
    """The first three words of the main text, lowercased, punctuation dropped."""
    return " ".join(t.lower() for t in WORD.findall(main_text(spec, record))[:3])


class RejectReason(StrEnum):
    """The fixed taxonomy of why a draft was not accepted."""

    SCHEMA_INVALID = "schema_invalid"  # a field is empty or has the wrong shape
    MISSING_WORDS = "missing_words"  # a required vocabulary word is absent
    LENGTH = "length"  # outside the spec's word limits
    LOW_QUALITY = "low_quality"  # critic score under min_score
    TRAIT_MISMATCH = "trait_mismatch"  # an assigned trait the critic could not confirm
    NEAR_DUPLICATE = "near_duplicate"  # too close to an accepted sample
    CONTAMINATED = "contaminated"  # resembles an eval or test item of novelty.avoid
    SEEN_BEFORE = "seen_before"  # too close to an earlier run's sample in novelty memory
    UNPARSEABLE = "unparseable"  # the endpoint's reply did not parse, even after repair
    LLM_ERROR = "llm_error"  # the endpoint failed (timeouts, errors) after retries
    DIVERSITY_GATE = "diversity_gate"  # breaks a spec diversity gate (e.g. a common opening)
    HUMAN_REJECTED = "human_rejected"  # a reviewer turned it down (review mode)


class PersonaRejectReason(StrEnum):
    """The fixed taxonomy of why a mined or related persona did not enter the pool."""

    NOT_PROSE = "not_prose"  # markup, JSON, clock times or mostly not letters
    TOO_SHORT = "too_short"  # fewer words than a description of a person needs
    PROMPT_EXAMPLE = "prompt_example"  # a near-copy of an example in the prompt templates
    SOURCE_COPY = "source_copy"  # a near-copy of its source text (or its parent persona)
    NEAR_DUPLICATE = "near_duplicate"  # too close to a persona already in the pool
    IMPLAUSIBLE = "implausible"  # the LLM check (personas.check: llm) found no specific person
