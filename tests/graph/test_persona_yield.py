"""Persona calls go further: a reply describing more people than asked for is kept (up to
twice the ask), so fewer calls are spent per persona that writes an accepted sample."""

from __future__ import annotations

from collections import Counter

import pytest

from personaloom.runner import run
from personaloom.store import read_jsonl
from personaloom.testing.scripted import PersonaloomResponder


class GenerousResponder(PersonaloomResponder):
    """Describes three times as many people as each miner request asks for."""

    @staticmethod
    def _count(text: str) -> int:
        return 3 * PersonaloomResponder._count(text)


@pytest.fixture
def responder() -> GenerousResponder:
    return GenerousResponder()


def test_extra_personas_in_a_reply_are_kept_up_to_twice_the_ask(
    make_spec, endpoint, tmp_path
) -> None:
    traits = {"feature": {"values": ["dialogue", "moral"], "target": 4}}
    spec = make_spec(
        personas={"per_text": 2, "relate_depth": 0, "max_uses": 1, "check": "rules"},
        traits=traits,
    )
    result = run(spec, out=tmp_path / "run")
    assert result.status == "complete"
    pool = read_jsonl(result.run_dir / "personas.jsonl")
    per_text = Counter(p["source_text_id"] for p in pool)
    assert set(per_text.values()) == {4}  # 6 described, 2 asked for, 4 kept
    section = result.report["persona_pool"]
    assert section["calls"] == {"persona_miner": 2}  # 8 samples, one persona each
    assert section["calls_per_usable_persona"] == 0.25
