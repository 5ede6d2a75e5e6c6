"""Pydantic models of what agents answer and of the records they produce.

These schemas are sent to the endpoint (as a JSON schema) and parsed back. They are kept
flat and small on purpose: constrained decoding on small local models copes with flat objects.
The schema ``title`` names the agent; the scripted test endpoint dispatches on it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from personaloom.records import PersonaRejectReason, RejectReason  # noqa: F401 - the agents' vocabulary

# Schema-only hints (json_schema_extra, not validation): a grammar-constrained small model
# then writes descriptions instead of bare names.
_DESCRIPTION: dict[str, Any] = {"minLength": 40, "maxLength": 400}


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
    fields: dict[str, Any] = {
        "persona": (str, Field(json_schema_extra=_DESCRIPTION)),
    }
    for trait, values in labels.items():
        fields[trait] = (Literal[tuple(values)], Field(description=f"the person's {trait}"))
    item = create_model(f"{title}Item", __config__=ConfigDict(title=f"{title}Item"), **fields)
    personas: Any = list[item]  # type: ignore[valid-type,unused-ignore]  # made at run time
    return create_model(title, __config__=ConfigDict(title=title), personas=(personas, ...))


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


class DraftTask(BaseModel):
    """One assignment from the planner: who writes, with which traits and words."""

    draft_id: str
    round: int
    persona_id: str
    traits: dict[str, str] = Field(default_factory=dict)
    words: dict[str, str] = Field(default_factory=dict)
    seed: int
    # The streaming engine's drafts see only the samples of drafts numbered below this (its
    # plan's view; graphs/window.py); None: every committed sample (the batch engine).
    horizon: int | None = None


class DraftOutcome(BaseModel):
    """What became of one draft; ``commit`` turns it into a dataset or rejected.jsonl row."""

    task: DraftTask
    # written: its outcome was already in the run directory (a draft re-run on resume)
    status: Literal["accepted", "rejected", "aborted", "written"]
    record: dict[str, Any] | None = None
    reason: str | None = None
    details: str = ""
    score: int | None = None
    feedback: str | None = None
    revisions: int = 0
    unconfirmed: list[str] = Field(default_factory=list)  # traits the critic did not confirm
    embedding: list[float] | None = None
    neighbour_id: str | None = None
    similarity: float | None = None
    contamination: dict[str, Any] | None = None  # the avoided item a contaminated draft resembles
