"""End to end on the embedded SmolLM2-135M and local MiniLM embeddings: no scripted replies.

Small on purpose (the model answers one request at a time on 2 cores), but every part is real:
the llama.cpp server started and stopped by the run, json_object+schema decoding, Chroma with
sentence-transformers vectors, the critic's checks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from personaloom.agents.critic import uses_word
from personaloom.runner import run
from personaloom.store import read_jsonl

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def servers() -> set[str]:
    found = subprocess.run(["pgrep", "-f", "smollm2-135m-instruct"], capture_output=True, text=True)
    return set(found.stdout.split())


def test_small_run_on_the_embedded_model(tmp_path: Path) -> None:
    corpus = REPO / "examples" / "tiny-stories" / "corpus"
    spec = {
        "name": "real-model",
        "task": {
            "instruction": "Write a short, simple story that a 3-4 year old can understand. Give it a title.",
            "output": {"title": "str", "story": "str"},
            "length": {"min_words": 25, "max_words": 400},
        },
        "corpus": [{"path": str(corpus / "*.txt")}],
        "personas": {"per_text": 2, "relate_depth": 0, "max_uses": 2},
        "traits": {"setting": {"values": ["forest", "sea"], "target": 1}},
        # The 135M critic cannot judge (see examples/tiny-stories/demo.yaml): the bar here is
        # the deterministic checks, with the LLM rubric still called.
        "critic": {"min_score": 1, "check_traits": False, "max_revisions": 2},
        "vocabulary": {"noun": str(REPO / "examples" / "tiny-stories" / "vocab" / "nouns.txt")},
        "budget": {"max_calls": 60},
        "concurrency": 1,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = servers()
    result = run(path, out=tmp_path / "run")
    assert servers() <= before, "the run stopped its llama.cpp server"
    assert result.status == "complete", result.report
    dataset = read_jsonl(result.run_dir / "dataset.jsonl")
    assert {s["traits"]["setting"] for s in dataset} == {"forest", "sea"}
    for sample in dataset:
        # The checks read every text field (docs/spec.md): the word may be in the title.
        text = "\n".join([sample["output"]["title"], sample["output"]["story"]])
        assert len(text.split()) >= 25
        assert uses_word(text, sample["words"]["noun"])
        assert sample["persona"]["text"]
    assert result.report["calls"] > 0
    from personaloom.traces import TraceStore

    calls = TraceStore(result.run_dir / "traces.sqlite").calls()
    assert {'"strategy": "json_object"' in c["params"] for c in calls} == {True}
    assert {c["agent"] for c in calls} == {"persona_miner", "writer", "critic"}
    assert all('"model": "smollm2-135m-instruct"' in c["params"] for c in calls)

    # Replay one writer call on the embedded model (started again for the replay).
    import asyncio

    from personaloom.replay import Replayer

    async def replay_one():
        replayer = Replayer(result.run_dir)
        try:
            writer = next(c for c in replayer.traces.calls("agent = 'writer' AND status = 'ok'"))
            return await replayer.replay(writer, temperature=0.9)
        finally:
            await replayer.aclose()

    (replayed,) = asyncio.run(replay_one())
    assert replayed.error is None and replayed.parsed["story"]
    assert servers() <= before, "the replay stopped its server too"
