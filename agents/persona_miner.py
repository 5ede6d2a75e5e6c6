"""persona-miner (Text-to-Persona): "Who is likely to [read|write|like|dislike] this text?"."""

from __future__ import annotations

from personaloom.agents.models import PersonaList

from personaloom.ids import stable_seed
from personaloom.llm import CallInfo

ROLE = "persona_miner"


async def mine(ctx, text_id: str, text: str, relation: str, n: int) -> list[str]:
    """Up to ``n`` distinct persona descriptions for one corpus text."""
    reply = await ctx.llm.call(
        ROLE,
        ctx.templates[ROLE],
        {"text": text, "relation": relation, "n": n},
        PersonaList,
        CallInfo(agent=ROLE, node="mine_personas"),
        seed=stable_seed(ctx.spec.seed, "mine", text_id, relation),
    )
    personas = [p.strip() for p in reply.personas if p.strip()]
    return list(dict.fromkeys(personas))[:n]
