"""Pydantic models of what agents answer and of the records they produce.

These schemas are sent to the endpoint (as a JSON schema) and parsed back. They are kept
flat and small on purpose: constrained decoding on small local models copes with flat objects.
The schema ``title`` names the agent; the scripted test endpoint dispatches on it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

# Schema-only hints (json_schema_extra, not validation): a grammar-constrained small model
# then writes descriptions instead of bare names.
_DESCRIPTION = {"minLength": 40, "maxLength": 400}


class PersonaList(BaseModel):
    """Reply of the persona-miner (Text-to-Persona): one sentence per person.

    Plain strings, not objects: small constrained models fill a list of strings reliably.
    """

    model_config = ConfigDict(title="PersonaList")
    personas: list[str] = Field(json_schema_extra={"items": {"type": "string", **_DESCRIPTION}})


class RelatedPersonaList(BaseModel):
    """Reply of the persona-relater (Persona-to-Persona): ``"relation: description"`` each."""

    model_config = ConfigDict(title="RelatedPersonaList")
    personas: list[str] = Field(json_schema_extra={"items": {"type": "string", **_DESCRIPTION}})


class PersonaCheck(BaseModel):
    """Reply of the persona-checker (``personas.check: llm``): one verdict per description,
    in the order they were given."""

    model_config = ConfigDict(title="PersonaCheck")
    plausible: list[bool]


def labelled_persona_model(title: str, labels: dict[str, list[str]]) -> type[BaseModel]:
    """A persona list whose items also carry persona traits (``source: persona``), each
    constrained to the trait's values: ``{"personas": [{"persona": "...", "field": "law"}]}``.

    Used only when a spec has persona traits, so specs without them keep the plain list of
    strings that small models fill best.
    """
    from typing import Literal

    fields: dict[str, Any] = {
        "persona": (str, Field(json_schema_extra=_DESCRIPTION)),
    }
    for trait, values in labels.items():
        fields[trait] = (Literal[tuple(values)], Field(description=f"the person's {trait}"))
    item = create_model(f"{title}Item", __config__=ConfigDict(title=f"{title}Item"), **fields)
    return create_model(title, __config__=ConfigDict(title=title), personas=(list[item], ...))


def critic_model(traits: Sequence[str]) -> type[BaseModel]:
    """The critic's reply: a 1-5 score, feedback, and one yes/no per assigned trait.

    One boolean field per trait (``has_<trait>``) rather than a mapping, so the schema stays
    flat for constrained decoding. Built once per trait list: the LLM layer caches each
    model's JSON schema by class, and a hot path should not make a class per call.
    """
    return _critic_model(tuple(traits))


@functools.lru_cache(maxsize=256)
def _critic_model(traits: tuple[str, ...]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "score": (int, Field(description="overall quality from 1 (bad) to 5 (excellent)")),
        "feedback": (
            str,
            Field(
                description="one or two sentences: what to improve",
                json_schema_extra={"maxLength": 300},
            ),
        ),
    }
    for trait in traits:
        fields[trait_field(trait)] = (bool, Field(description=f"does it have the {trait}?"))
    return create_model("CriticReview", __config__=ConfigDict(title="CriticReview"), **fields)


def trait_field(trait: str) -> str:
    return "has_" + trait.replace("-", "_")


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
