"""The persona gate's rules, each on real bad replies of the embedded SmolLM2-135M (issue 14:
personas mined from one-line Debian package descriptions), and on good personas that must pass.

Embeddings here are the scripted endpoint's hashed bag of words (offline, deterministic); the
same cases on the real MiniLM are in tests/integration/test_persona_gate_minilm.py.
"""

from __future__ import annotations

import pytest

from personaloom.agents.models import PersonaRejectReason
from personaloom.agents.persona_gate import (
    PersonaGate,
    copied_share,
    prompt_examples,
    shape_finding,
)
from personaloom.prompts import load_template
from personaloom.testing.scripted import embed

MINER_EXAMPLE = "A 60-year-old retired bus driver who grows tomatoes and worries about his pension."
RELATER_EXAMPLE = "A 70-year-old widow who feeds the street's stray cats."

GOOD = [
    "A 45-year-old school nurse in Leeds who grows vegetables on her balcony and worries about rent.",
    "A 30-year-old Linux developer who maintains the D-Bus thumbnailing service for GNOME.",
    "A young sysadmin who lives in tmux and keeps dozens of terminal sessions open.",
    "A 62-year-old retired postman who keeps bees and writes to the local paper.",
    "A pastry chef who opens the bakery at 5am and worries about the price of butter.",
    "An elderly neighbour who feeds pigeons in the park every morning.",
    "A nurse/midwife in Leeds who runs the night shift and loves old films.",
    "John Smith, 27 years old | Software engineer",  # SmolLM2 without a prompt example
    "A retired nurse in Lisbon",
    "Una enfermera jubilada de Lisboa que cultiva tomates en su balcón.",
]


def gate() -> PersonaGate:
    examples = prompt_examples([load_template("persona_miner"), load_template("persona_relater")])
    return PersonaGate(examples, [embed(e) for e in examples])


def check(text: str, source: str = "bc: GNU bc arbitrary precision calculator language"):
    return gate().check(text, embed(text), source, embed(source))


def test_the_examples_are_read_from_the_templates_in_use(tmp_path) -> None:
    assert gate().examples == [MINER_EXAMPLE, RELATER_EXAMPLE]
    override = tmp_path / "miner.md.j2"
    override.write_text(
        "[user]\n<text>{{ text }}</text>\nWho would {{ relation }} it? Describe {{ n }} people.\n"
        'For example "A night-shift baker in Porto who paints birds." Reply as JSON: '
        '{"personas": ["..."]}\n'
    )
    assert prompt_examples([load_template("persona_miner", override)]) == [
        "A night-shift baker in Porto who paints birds."
    ]


@pytest.mark.parametrize(
    "reply",
    [
        MINER_EXAMPLE,
        "A 60-year-old retired bus driver who grows tomatoes and worries about his pension",
        "a 60-year-old retired bus driver who loves fishing and worries about his pension",
        "A widow who feeds the street's stray cats",
        "neighbour: A 70-year-old widow who feeds the street's stray cats.".split(": ", 1)[1],
    ],
)
def test_a_copy_of_a_prompt_example_is_rejected(reply: str) -> None:
    finding = check(reply)
    assert finding is not None and finding.reason is PersonaRejectReason.PROMPT_EXAMPLE
    assert "near-copy of the prompt's example" in finding.details


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("19am 9:54m 7:30am", "clock times"),
        ("(f,g,h); (i): (j: (k:", "mostly not letters"),
        ("] { name: { age: 60, job: { role:", "markup, JSON or a URL"),
        ("Javiera de la Torre, 2014-13.2.26.75.98 6:42.20", "mostly not letters"),
        ("<persona>A nurse</persona>", "markup, JSON or a URL"),
        ("1234567890.com/user-benefits-the-worlds-most-rewarding-game", "a URL"),
        ("Bella Colebrera, 2013-01-05.26.15.26.16..", "mostly not letters"),
    ],
)
def test_fragments_markup_and_timestamps_are_not_a_person(reply: str, why: str) -> None:
    finding = shape_finding(reply)
    assert finding is not None and finding.reason is PersonaRejectReason.NOT_PROSE
    assert why in finding.details


@pytest.mark.parametrize(
    "reply",
    [
        "A baker.",
        "Retired nurse",
        "Aliza",
        "a b c d e f g",
        "user-benefits-of-the-worlds-best-game",
    ],
)
def test_too_few_words_is_too_short(reply: str) -> None:
    finding = shape_finding(reply)
    assert finding is not None and finding.reason is PersonaRejectReason.TOO_SHORT


@pytest.mark.parametrize(
    ("reply", "source"),
    [
        (
            "D-Bus Thumbnailing Service (common files)",
            "tumbler-common: D-Bus Thumbnailing Service (common files)",
        ),
        (
            "D-Bus Thumbnailing Service for common files users",
            "tumbler-common: D-Bus Thumbnailing Service (common files)",
        ),
        (
            "Secure Sockets Layer toolkit developer",
            "libssl-dev: Secure Sockets Layer toolkit - development files",
        ),
    ],
)
def test_the_source_text_copied_back_is_rejected(reply: str, source: str) -> None:
    finding = check(reply, source)
    assert finding is not None and finding.reason is PersonaRejectReason.SOURCE_COPY
    assert "its source text" in finding.details


def test_a_copy_of_the_parent_persona_names_the_parent() -> None:
    parent = "A 45-year-old school nurse in Leeds who grows vegetables and worries about rent."
    text = "A school nurse in Leeds who grows vegetables and worries about rent."
    finding = gate().check(text, embed(text), parent, embed(parent), "its parent persona p1")
    assert finding is not None and finding.reason is PersonaRejectReason.SOURCE_COPY
    assert "its parent persona p1" in finding.details


@pytest.mark.parametrize("persona", GOOD)
def test_good_personas_pass(persona: str) -> None:
    source = "tumbler-common: D-Bus Thumbnailing Service (common files)"
    assert check(persona, source) is None
    assert check(persona, "tmux: terminal multiplexer") is None


def test_naming_the_source_topic_is_not_copying_it() -> None:
    source = "tumbler-common: D-Bus Thumbnailing Service (common files)"
    assert copied_share(GOOD[1], source) < 0.5
    assert copied_share("D-Bus Thumbnailing Service (common files)", source) == 1.0
