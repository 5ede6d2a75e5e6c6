"""critic: deterministic checks first (schema, required words, length), then an LLM rubric and
a check that the draft really has its assigned traits. The verdict is accept, revise (with
feedback, bounded by ``critic.max_revisions``) or reject with a reason from ``RejectReason``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from personaloom.agents.models import DraftTask, RejectReason, critic_model, trait_field
from personaloom.agents.writer import render_record
from personaloom.ids import stable_seed
from personaloom.llm import CallInfo
from personaloom.records import WORD as _WORD
from personaloom.records import opening, text_of
from personaloom.spec import Spec, total_target

ROLE = "critic"
# Share of word trigrams that repeat an earlier one. Fluent prose stays under 0.1;
# degenerate loops from small models ("A Tale of Milk, A Tale of Milk, ...") go far above.
MAX_REPETITION = 0.2


@dataclass(frozen=True)
class Finding:
    """A failed check: the reason and what to tell the writer."""

    reason: RejectReason
    feedback: str
    traits: tuple[str, ...] = ()  # for trait_mismatch: the traits the critic did not confirm


@dataclass(frozen=True)
class Review:
    score: int
    feedback: str
    traits: dict[str, bool] = field(default_factory=dict)


def word_forms(word: str) -> set[str]:
    """Inflections that count as using ``word`` (jump: jumps, jumped, jumping...)."""
    w = word.lower()
    forms = {w, w + "s", w + "es", w + "ed", w + "d", w + "ing", w + "er", w + "est", w + "ly"}
    if w.endswith("e"):
        forms |= {w[:-1] + "ing", w[:-1] + "er", w[:-1] + "est"}
    if w.endswith("y") and len(w) > 2:
        stem = w[:-1]
        forms |= {stem + "ies", stem + "ied", stem + "ier", stem + "iest", stem + "ily"}
    if len(w) >= 3 and w[-1] not in "aeiouwy" and w[-2] in "aeiou" and w[-3] not in "aeiou":
        forms |= {w + w[-1] + "ed", w + w[-1] + "ing", w + w[-1] + "er", w + w[-1] + "est"}
    return forms


def uses_word(text: str, word: str) -> bool:
    if " " in word.strip():  # a phrase: match it as written
        return word.lower() in text.lower()
    tokens = {t.lower() for t in _WORD.findall(text)}
    return not tokens.isdisjoint(word_forms(word))


def repetition(tokens: list[str]) -> float:
    trigrams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
    if len(trigrams) < 10:
        return 0.0
    return 1 - len(set(trigrams)) / len(trigrams)


def opening_counts(ctx) -> Counter[str]:
    """Openings of the accepted samples: counted when the run is wired (``graphs.context.wire``),
    kept up to date by commit."""
    if ctx.openings is None:
        raise RuntimeError("the context has no opening counts: graphs.wiring.wire(ctx) first")
    return ctx.openings


def diversity_gate(
    spec: Spec, record: dict[str, Any], openings: Mapping[str, int]
) -> Finding | None:
    """The spec's diversity gates: ``max_opening_share`` caps how many samples may share a
    three-word opening, as a share of the run's total target, so the finished dataset stays
    under it."""
    share = spec.critic.diversity.max_opening_share
    if share is None:
        return None
    start = opening(spec, record)
    limit = max(1, math.floor(share * total_target(spec)))
    if start and openings[start] + 1 > limit:
        return Finding(
            RejectReason.DIVERSITY_GATE,
            f'{openings[start]} samples already open with "{start}": begin differently.',
        )
    return None


def deterministic_checks(spec: Spec, task: DraftTask, record: dict[str, Any]) -> Finding | None:
    for name, value in record.items():
        if isinstance(value, str) and not value.strip():
            return Finding(RejectReason.SCHEMA_INVALID, f"The field {name!r} is empty.")
        if isinstance(value, list) and not value:
            return Finding(RejectReason.SCHEMA_INVALID, f"The field {name!r} has no items.")
    text = text_of(spec, record)
    missing = [w for w in task.words.values() if not uses_word(text, w)]
    if missing:
        return Finding(RejectReason.MISSING_WORDS, f"Use these words: {', '.join(missing)}.")
    tokens = [t.lower() for t in _WORD.findall(text)]
    words = len(tokens)
    if repetition(tokens) > MAX_REPETITION:
        return Finding(RejectReason.LOW_QUALITY, "The text repeats itself: say each thing once.")
    limits = spec.task.length
    if limits.min_words and words < limits.min_words:
        return Finding(
            RejectReason.LENGTH, f"Too short ({words} words): write at least {limits.min_words}."
        )
    if limits.max_words and words > limits.max_words:
        return Finding(
            RejectReason.LENGTH, f"Too long ({words} words): write at most {limits.max_words}."
        )
    return None


async def review(ctx, task: DraftTask, record: dict[str, Any], revision: int) -> Review:
    """The LLM rubric: a 1-5 score, feedback, and whether each assigned trait is present."""
    spec = ctx.spec
    judged = spec.traits_from("critic") if spec.critic.check_traits else []
    traits = {name: value for name, value in task.traits.items() if name in judged}
    schema = critic_model(list(traits))
    reply = await ctx.llm.call(
        ROLE,
        ctx.templates[ROLE],
        {
            "instruction": spec.task.instruction,
            "draft": render_record(record),
            "traits": traits,
            "field_names": {name: trait_field(name) for name in traits},
        },
        schema,
        CallInfo(agent=ROLE, node="critique", sample_id=task.draft_id, persona_id=task.persona_id),
        seed=stable_seed(task.seed, "critic", revision),
    )
    data = reply.model_dump()
    return Review(
        score=min(max(int(data["score"]), 1), 5),
        feedback=str(data["feedback"]).strip(),
        traits={name: bool(data[trait_field(name)]) for name in traits},
    )


def judge(task: DraftTask, result: Review, min_score: int) -> Finding | None:
    """The rubric's finding, or None when the draft passes."""
    unconfirmed = [name for name, ok in result.traits.items() if not ok]
    if unconfirmed:
        wanted = ", ".join(f"{name}: {task.traits[name]}" for name in unconfirmed)
        return Finding(
            RejectReason.TRAIT_MISMATCH,
            f"Make it clearly have {wanted}. {result.feedback}",
            tuple(unconfirmed),
        )
    if result.score < min_score:
        return Finding(RejectReason.LOW_QUALITY, result.feedback or "Improve the quality.")
    return None
