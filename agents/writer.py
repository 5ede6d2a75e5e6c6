"""writer: one instance of the task, from a persona's perspective, under assigned constraints."""

from __future__ import annotations

from typing import Any

from personaloom.agents.models import DraftTask
from personaloom.ids import stable_seed
from personaloom.llm import CallInfo

ROLE = "writer"


def length_hint(ctx) -> str | None:
    limits = ctx.spec.task.length
    if limits.min_words and limits.max_words:
        return f"{limits.min_words} to {limits.max_words} words"
    if limits.min_words:
        return f"at least {limits.min_words} words"
    if limits.max_words:
        return f"at most {limits.max_words} words"
    return None


async def write(
    ctx,
    task: DraftTask,
    persona: str,
    *,
    revision: int = 0,
    previous: dict[str, Any] | None = None,
    feedback: str | None = None,
    neighbour: str | None = None,
) -> dict[str, Any]:
    """The draft record (the task's output fields); raises LLMFailure when none came."""
    spec = ctx.spec
    schema = spec.output_model()
    variables = {
        "persona": persona,
        "instruction": spec.task.instruction,
        "traits": {n: v for n, v in task.traits.items() if spec.traits[n].source == "critic"},
        "descriptions": {n: t.description for n, t in spec.traits.items() if t.description},
        "words": list(task.words.values()),
        "length": length_hint(ctx),
        "examples": spec.task.examples,
        "fields": list(schema.model_fields),
        "previous": render_record(previous) if previous else None,
        "feedback": feedback,
        "neighbour": neighbour,
    }
    reply = await ctx.llm.call(
        ROLE,
        ctx.templates[ROLE],
        variables,
        schema,
        CallInfo(agent=ROLE, node="write", sample_id=task.draft_id, persona_id=task.persona_id),
        seed=stable_seed(task.seed, "write", revision),
    )
    return reply.model_dump()


def render_record(record: dict[str, Any]) -> str:
    """A record as the text critics read and embeddings see: one field per paragraph."""
    parts = []
    for name, value in record.items():
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        parts.append(f"{name}: {value}")
    return "\n".join(parts)
