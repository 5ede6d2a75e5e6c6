"""persona-miner (Text-to-Persona): "Who is likely to [read|write|like|dislike] this text?"."""

from __future__ import annotations

import re
from typing import Any

from personaloom.agents.models import PersonaList, labelled_persona_model
from personaloom.ids import stable_seed
from personaloom.llm import CallInfo

ROLE = "persona_miner"
# Models often describe more people than asked for. Those cost no further call, and the gate
# turns many away, so up to this many times the number asked for are kept.
KEEP_PER_ASKED = 2


def persona_labels(spec) -> dict[str, list[str]]:
    """Persona traits (``source: persona``) and their values: what each persona is labelled with."""
    return {name: list(spec.traits[name].values) for name in spec.traits_from("persona")}


# Where a description ends, whatever a model wrote after it: a tag (an echo of the prompt's
# <text> data slot), the end of a JSON value written inside the string, or a new paragraph
# (small models go on to answer as the persona).
_DESCRIPTION_END = re.compile(r"</?[A-Za-z]\w*>|\"\s*[\]}]|\n\s*\n")


def clean_description(text: str) -> str:
    """A persona description as the miner asks for it: what comes before any echoed markup or
    new paragraph, on one line."""
    end = _DESCRIPTION_END.search(text)
    return " ".join(text[: end.start() if end else None].split()).strip(" \"'")


def read_personas(reply: Any, labels: dict[str, list[str]]) -> list[tuple[str, dict[str, str]]]:
    """``(description, persona-trait labels)`` pairs from a plain or labelled reply; a
    description with nothing left once cleaned is dropped."""
    result = []
    for item in reply.personas:
        if isinstance(item, str):
            text, tags = item, {}
        else:
            data = item.model_dump()
            text, tags = data.pop("persona"), {k: str(v) for k, v in data.items() if k in labels}
        if text := clean_description(text):
            result.append((text, tags))
    return result


async def mine(
    ctx, text_id: str, text: str, relation: str, n: int, wanted: dict[str, list[str]] | None = None
) -> list[tuple[str, dict[str, str]]]:
    """``n`` distinct ``(persona description, labels)`` asked for one corpus text; up to
    ``KEEP_PER_ASKED * n`` kept when the reply holds more."""
    labels = persona_labels(ctx.spec)
    schema = labelled_persona_model("PersonaList", labels) if labels else PersonaList
    reply = await ctx.llm.call(
        ROLE,
        ctx.templates[ROLE],
        {"text": text, "relation": relation, "n": n, "labels": labels, "wanted": wanted or {}},
        schema,
        CallInfo(agent=ROLE, node="mine_personas"),
        seed=stable_seed(ctx.spec.seed, "mine", text_id, relation),
    )
    found = dict(read_personas(reply, labels))  # the first labels of a repeated description
    return list(found.items())[: KEEP_PER_ASKED * n]
