"""Persona descriptions are kept as the miner asks for them: one description, no echoed markup."""

from __future__ import annotations

from personaloom.agents.models import PersonaList
from personaloom.agents.persona_miner import clean_description, read_personas


def test_a_description_ends_where_the_model_wandered_off() -> None:
    # What SmolLM2-135M wrote in a real demo run: the JSON's end, the prompt's </text> slot,
    # then an answer in the persona's voice.
    raw = (
        "Aliza da Silva, Elm Street Library 2019\"]}\n</text>\n\n\nI'm glad that you're excited "
        "to share stories with children!"
    )
    assert clean_description(raw) == "Aliza da Silva, Elm Street Library 2019"
    assert clean_description("A nurse who\n  runs marathons.\n\nAs a nurse, I") == (
        "A nurse who runs marathons."
    )
    assert clean_description("  A 60-year-old retired bus driver.  ") == (
        "A 60-year-old retired bus driver."
    )
    assert clean_description('A chef who says "less is more" at work.') == (
        'A chef who says "less is more" at work.'
    )


def test_nothing_left_is_no_persona() -> None:
    reply = PersonaList(personas=["</text> I am a persona", "A baker.", '"]}'])
    assert read_personas(reply, {}) == [("A baker.", {})]
