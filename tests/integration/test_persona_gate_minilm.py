"""The persona gate's embedding thresholds on the real local MiniLM (what a run on the embedded
model uses): the embedded model's copies are caught, good personas pass."""

from __future__ import annotations

import pytest

from personaloom.agents.models import PersonaRejectReason
from personaloom.agents.persona_gate import EXAMPLE_ROLES, PersonaGate, prompt_examples
from personaloom.prompts import load_template

pytestmark = pytest.mark.integration

PACKAGE = "tumbler-common: D-Bus Thumbnailing Service (common files)"


@pytest.fixture(scope="module")
def embed():
    from personaloom.local.embed import LocalEmbedder

    return LocalEmbedder().embed


@pytest.fixture(scope="module")
def gate(embed) -> PersonaGate:
    examples = prompt_examples(load_template(role) for role in EXAMPLE_ROLES)
    return PersonaGate(examples, embed(examples))


@pytest.mark.parametrize(
    ("persona", "source", "reason"),
    [
        (
            "A 60-year-old retired bus driver who grows tomatoes and worries about his pension",
            PACKAGE,
            PersonaRejectReason.PROMPT_EXAMPLE,
        ),
        (
            "A 60-year-old retired bus driver who loves fishing and worries about his pension.",
            PACKAGE,
            PersonaRejectReason.PROMPT_EXAMPLE,
        ),
        (
            "A widow who feeds the stray cats in her street.",
            PACKAGE,
            PersonaRejectReason.PROMPT_EXAMPLE,
        ),
        ("D-Bus Thumbnailing Service (common files)", PACKAGE, PersonaRejectReason.SOURCE_COPY),
        (
            "D-Bus Thumbnailing Service for common files users",
            PACKAGE,
            PersonaRejectReason.SOURCE_COPY,
        ),
        (
            "Secure Sockets Layer toolkit developer",
            "libssl-dev: Secure Sockets Layer toolkit - development files",
            PersonaRejectReason.SOURCE_COPY,
        ),
    ],
)
def test_copies_are_caught(gate, embed, persona: str, source: str, reason) -> None:
    vector, source_vector = embed([persona, source])
    finding = gate.check(persona, vector, source, source_vector)
    assert finding is not None and finding.reason is reason, finding


@pytest.mark.parametrize(
    ("persona", "source"),
    [
        (
            "A 30-year-old Linux developer who maintains the D-Bus thumbnailing service for GNOME.",
            PACKAGE,
        ),
        ("A desktop user who wants fast thumbnails of her photos in the file manager.", PACKAGE),
        (
            "A young sysadmin who lives in tmux and keeps dozens of terminal sessions open.",
            "tmux: terminal multiplexer",
        ),
        (
            "A 45-year-old nurse who grows vegetables on her balcony and worries about rent.",
            PACKAGE,
        ),
        ("A 62-year-old retired postman who keeps bees and writes to the local paper.", PACKAGE),
        ("A 70-year-old widower who takes care of his garden", PACKAGE),
        (
            "A security engineer who audits TLS code at a bank and worries about old ciphers.",
            "libssl-dev: Secure Sockets Layer toolkit - development files",
        ),
    ],
)
def test_good_personas_pass(gate, embed, persona: str, source: str) -> None:
    vector, source_vector = embed([persona, source])
    assert gate.check(persona, vector, source, source_vector) is None
