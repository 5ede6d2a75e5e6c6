"""persona-relater (Persona-to-Persona): "Who is in close relationship with this persona?"."""

from __future__ import annotations

from personaloom.agents.models import RelatedPersonaList, labelled_persona_model
from personaloom.agents.persona_miner import KEEP_PER_ASKED, persona_labels, read_personas
from personaloom.ids import stable_seed
from personaloom.llm import CallInfo

ROLE = "persona_relater"


async def relate(
    ctx, persona_id: str, persona: str, n: int, wanted: dict[str, list[str]] | None = None
) -> list[tuple[str, str, dict[str, str]]]:
    """``n`` ``(relation, persona description, labels)`` asked for, related to one persona;
    up to ``KEEP_PER_ASKED * n`` kept when the reply holds more."""
    labels = persona_labels(ctx.spec)
    schema = labelled_persona_model("RelatedPersonaList", labels) if labels else RelatedPersonaList
    reply = await ctx.llm.call(
        ROLE,
        ctx.templates[ROLE],
        {"persona": persona, "n": n, "labels": labels, "wanted": wanted or {}},
        schema,
        CallInfo(agent=ROLE, node="mine_personas", persona_id=persona_id),
        seed=stable_seed(ctx.spec.seed, "relate", persona_id),
    )
    seen: set[str] = set()
    related = []
    for item, tags in read_personas(reply, labels):
        relation, text = split_relation(item)
        if text and text not in seen and text != persona.strip():
            seen.add(text)
            related.append((relation, text, tags))
    return related[: KEEP_PER_ASKED * n]


def split_relation(item: str) -> tuple[str, str]:
    """``"neighbour: A widow who..."`` -> ``("neighbour", "A widow who...")``."""
    head, sep, tail = item.partition(":")
    if sep and 0 < len(head.split()) <= 3:
        return head.strip().lower(), tail.strip()
    return "related", item.strip()
