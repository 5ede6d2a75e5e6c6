"""The dashboard on a run with a persona pool and an avoid set: ``contaminated`` where the
rejection reasons are listed and filtered, pool personas under their file, a sample's lineage
naming its pool row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from textual.widgets import DataTable, Select, Static

from personaloom.runner import run
from personaloom.testing.scripted import ChatRequest, PersonaloomResponder, ScriptedEndpoint
from personaloom.tui.app import PersonaloomApp
from personaloom.tui.screens.personas import PersonasScreen
from personaloom.tui.screens.sample import SampleScreen
from personaloom.tui.screens.samples import SamplesScreen

SIZE = (140, 40)
ITEM = (
    "A lighthouse keeper counts forty ships in the morning and twice as many after noon; "
    "how many ships does she count in the whole day?"
)


class CopyingWriter(PersonaloomResponder):
    """Every third draft is the eval item, word for word."""

    def _write(self, request: ChatRequest, count: int) -> dict[str, Any]:
        record = super()._write(request, count)
        if count % 3 == 0:
            record["story"] = ITEM
        return record


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pool-run")
    folder = root / "spec"
    folder.mkdir()
    rows = [
        {"input persona": f"A {job} who grew up by the {place}."}
        for job in ("welder", "poet", "judge", "baker")
        for place in ("lake", "mine", "fjord")
    ]
    (folder / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "evals.txt").write_text(ITEM + "\n")
    with ScriptedEndpoint(CopyingWriter()) as server:
        spec = {
            "name": "pooled",
            "task": {
                "instruction": "Write a short story.",
                "output": {"title": "str", "story": "str"},
            },
            "personas": {
                "pool": {"path": "pool.jsonl", "field": "input persona"},
                "relate_depth": 0,
                "max_uses": 1,
            },
            "traits": {"setting": {"values": ["forest", "sea"], "target": 3}},
            "novelty": {"threshold": 0.9, "avoid": ["evals.txt"]},
            "critic": {"min_score": 3, "max_revisions": 0},
            "models": {"default": {"base_url": server.base_url, "timeout": 10}},
            "embeddings": {"provider": "openai", "model": "scripted-embed"},
            "cache": {"enabled": False},
            "concurrency": 1,
        }
        path = folder / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        result = run(path, out=root / "run", notice=lambda text: None)
    assert result.status == "complete" and result.report["rejections"].get("contaminated")
    return root / "run"


def _text(widget: Static) -> str:
    lines = (widget.render_line(y).text for y in range(widget.size.height))
    return " ".join(" ".join(lines).split())


async def _read(pilot, wait_for, finished_and_read) -> None:
    await wait_for(pilot, lambda: finished_and_read(pilot.app))
    counters = pilot.app.screen.query_one("#counters")
    await wait_for(pilot, lambda: "rejected by" in _text(counters))


async def test_contaminated_is_listed_and_filtered(pool_run: Path, wait_for, finished_and_read):
    app = PersonaloomApp(watch=pool_run)
    async with app.run_test(size=SIZE) as pilot:
        await _read(pilot, wait_for, finished_and_read)
        count = app.view.report["rejections"]["contaminated"]
        assert f"contaminated {count}" in _text(app.screen.query_one("#counters"))
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, SamplesScreen)
        table = screen.query_one("#samples", DataTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        screen.query_one("#reason", Select).value = "contaminated"
        await wait_for(pilot, lambda: table.row_count == count)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SampleScreen))
        summary = _text(app.screen.query_one("#sample-summary"))
        assert "rejected: contaminated" in summary and "held-out evaluation item" in summary


async def test_pool_personas_and_lineage(pool_run: Path, wait_for, finished_and_read) -> None:
    app = PersonaloomApp(watch=pool_run)
    async with app.run_test(size=SIZE) as pilot:
        await _read(pilot, wait_for, finished_and_read)
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, PersonasScreen)
        pool = screen.query_one("#pool", DataTable)
        await wait_for(pilot, lambda: pool.row_count == 12)
        first = app.view.store.personas.rows[0]
        pool.move_cursor(row=pool.get_row_index(first["id"]))
        await pilot.pause(0.1)
        assert "from pool pool.jsonl, row 0" in _text(screen.query_one("#persona-detail"))
        tree = screen.query_one("#relations")
        labels = [str(node.label) for node in tree.root.children]
        assert labels == ["pool pool.jsonl"]

        sample = app.view.store.dataset.rows[0]
        await pilot.press("3")
        table = app.screen.query_one("#samples", DataTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        table.move_cursor(row=table.get_row_index(sample["id"]))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SampleScreen))
        row = sample["lineage"]["pool"]["row"]
        assert f"from pool pool.jsonl row {row}" in _text(app.screen.query_one("#sample-summary"))
