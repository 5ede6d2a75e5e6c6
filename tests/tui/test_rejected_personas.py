"""The Personas screen lists the personas the gate turned away, with their reasons, and shows
one's details: why, and the source text it was compared with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from personaloom.runner import arun
from personaloom.store import read_jsonl
from personaloom.testing.scripted import ChatRequest, PersonaloomResponder
from personaloom.tui.app import PersonaloomApp
from personaloom.tui.screens.personas import PersonasScreen

# Real replies of the embedded SmolLM2-135M (issue 14).
BAD = [
    "19am 9:54m 7:30am",
    "A 60-year-old retired bus driver who grows tomatoes and worries about his pension.",
]


class EchoingMiner(PersonaloomResponder):
    def _mine(self, request: ChatRequest) -> dict[str, Any]:
        return {"personas": [*BAD, *super()._mine(request)["personas"]]}


@pytest.fixture
def responder() -> EchoingMiner:
    return EchoingMiner()


async def test_turned_away_personas_and_their_reasons(make_spec, tmp_path: Path, wait_for) -> None:
    spec = make_spec(personas={"per_text": 3, "relate_depth": 0, "max_uses": 1})
    result = await arun(spec, out=tmp_path / "run", notice=lambda text: None)
    rejected = read_jsonl(result.run_dir / "rejected_personas.jsonl")
    assert {r["reason"] for r in rejected} == {"not_prose", "prompt_example"}
    app = PersonaloomApp(watch=result.run_dir)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.view is not None)
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, PersonasScreen)
        table = screen.query_one("#rejected-personas", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(rejected))
        panel = screen.query_one("#rejected-personas-panel")
        counts = {
            r: sum(x["reason"] == r for x in rejected) for r in ("not_prose", "prompt_example")
        }
        assert f"not_prose {counts['not_prose']}" in str(panel.border_subtitle)
        assert f"prompt_example {counts['prompt_example']}" in str(panel.border_subtitle)
        copy = next(r for r in rejected if r["reason"] == "prompt_example")
        table.focus()
        table.move_cursor(row=table.get_row_index(copy["id"]))
        detail = screen.query_one("#persona-detail", Static)

        def shown() -> str:
            lines = (detail.render_line(y).text for y in range(detail.size.height))
            return " ".join(" ".join(lines).split())

        expected = (
            f"{copy['id']} turned away: prompt_example",
            "a near-copy of the prompt's example",
            f"source text {copy['source_text_id']}",
        )
        await wait_for(pilot, lambda: all(part in shown() for part in expected))
