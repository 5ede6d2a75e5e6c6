"""persona-checker (``personas.check: llm``): does each description name a plausible, specific
person? One call judges every persona that passed the gate's rules in one mining step.

Off by default: the embedded 135M model cannot judge this any better than it mines. A reply
with fewer verdicts than personas leaves the rest in (they passed the rules).
"""

from __future__ import annotations

from personaloom.agents.models import PersonaCheck
from personaloom.ids import stable_seed
from personaloom.llm import CallInfo

ROLE = "persona_checker"


async def check(ctx, personas: list[str]) -> list[bool]:
    """One verdict per description, in order: True when it reads as a plausible person."""
    reply = await ctx.llm.call(
        ROLE,
        ctx.templates[ROLE],
        {"personas": personas},
        PersonaCheck,
        CallInfo(agent=ROLE, node="mine_personas"),
        seed=stable_seed(ctx.spec.seed, "check", *personas),
    )
    verdicts = [bool(v) for v in reply.plausible]
    return [*verdicts[: len(personas)], *[True] * (len(personas) - len(verdicts))]
