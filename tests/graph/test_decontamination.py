"""Decontamination while generating (``novelty.avoid``), through the compiled graph and the
scripted endpoint: a writer that copies an eval item is rejected ``contaminated``, told why
on revision (never shown the item), the report counts it, and avoid items never become
samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from personaloom.cli import main
from personaloom.report import render_markdown
from personaloom.runner import run
from personaloom.store import read_jsonl
from personaloom.testing.scripted import ChatRequest, PersonaloomResponder
from personaloom.traces import TraceStore
from personaloom.vectors import AVOID, SAMPLES, NoveltyIndex

EVAL = [
    {
        "question": "A baker fills twelve trays with nine rolls each and sells all but "
        "fifteen of them before noon. How many rolls did the baker sell?",
        "answer": "93",
    },
    {
        "question": "Tom walks four kilometres to the harbour, rows a boat across the bay "
        "for six more, then walks home the long way. How far did he travel?",
        "answer": "unknown",
    },
]


class CopyingWriter(PersonaloomResponder):
    """A writer that hands in an eval item as its story, until told it must not: then it
    writes its own. ``shuffle`` copies the item's words in another order (no 13 words in a
    row survive, but its bag of words, which the scripted embedding sees, is the same)."""

    def __init__(self, item: str, *, shuffle: bool = False, every: int = 1):
        super().__init__()
        self.item, self.shuffle, self.every = item, shuffle, every
        self.told: list[str] = []

    def _write(self, request: ChatRequest, count: int) -> dict[str, Any]:
        record = super()._write(request, count)
        if "held-out evaluation item" in request.text:
            self.told.append(request.text)
        elif count % self.every == 0:
            words = self.item.split()
            record["story"] = " ".join(words[::2] + words[1::2]) if self.shuffle else self.item
        return record


def spec_with_avoid(make_spec, tmp_path: Path, **sections: Any) -> Path:
    path = make_spec(
        name="decontam",
        vocabulary={},
        novelty={"threshold": 0.9, "avoid": [{"path": "evals/test.jsonl", "field": "question"}]},
        **sections,
    )
    (path.parent / "evals").mkdir()
    (path.parent / "evals" / "test.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in EVAL)
    )
    return path


def test_a_copied_eval_item_is_rejected_contaminated_and_counted(
    make_spec, tmp_path: Path, endpoint
) -> None:
    endpoint.responder = writer = CopyingWriter(EVAL[1]["question"], every=3)
    spec = spec_with_avoid(make_spec, tmp_path, critic={"min_score": 3, "max_revisions": 0})
    result = run(spec, out=tmp_path / "run", notice=lambda text: None)
    assert result.status == "complete", result.stop_reason
    rejected = [r for r in read_jsonl(result.run_dir / "rejected.jsonl")]
    dirty = [r for r in rejected if r["reason"] == "contaminated"]
    assert dirty and len(dirty) == len(rejected)
    for row in dirty:
        assert row["draft"]["story"] == EVAL[1]["question"]
        assert row["contamination"]["item"] == "evals/test.jsonl#1"
        assert row["contamination"]["match"] == "ngram"
        assert row["contamination"]["ngram"] in EVAL[1]["question"]
        assert "held-out evaluation item" in row["details"]
        assert row["critic"]["score"] is None  # caught before the critic was asked
    accepted = read_jsonl(result.run_dir / "dataset.jsonl")
    assert all(s["output"]["story"] != EVAL[1]["question"] for s in accepted)
    assert not writer.told  # no revision allowed: nothing to tell

    report = result.report
    assert report["rejections"]["contaminated"] == len(dirty)
    dec = report["decontamination"]
    assert dec["items"] == 2 and dec["ngram"] == 13 and dec["items_hit"] == 1
    assert dec["caught"] == dec["rejected"] == len(dirty)
    assert dec["by_kind"] == {"ngram": len(dirty), "similar": 0}
    assert "## Decontamination" in render_markdown(report)
    assert f"| contaminated | {len(dirty)} |" in (result.run_dir / "report.md").read_text()


def test_the_writer_is_told_and_never_shown_the_item(make_spec, tmp_path: Path, endpoint) -> None:
    endpoint.responder = writer = CopyingWriter(EVAL[0]["question"])
    spec = spec_with_avoid(make_spec, tmp_path, critic={"min_score": 3, "max_revisions": 1})
    result = run(spec, out=tmp_path / "run", notice=lambda text: None)
    assert result.status == "complete", result.stop_reason
    assert writer.told  # every first draft was the eval item, every revision was told
    assert not read_jsonl(result.run_dir / "rejected.jsonl")
    dataset = read_jsonl(result.run_dir / "dataset.jsonl")
    assert dataset and all(s["lineage"]["revisions"] == 1 for s in dataset)
    for prompt in writer.told:
        assert "word for word from a held-out evaluation item" in prompt
        assert "twelve trays with nine rolls" in prompt  # its own draft, shown to fix it
    traces = TraceStore(result.run_dir / "traces.sqlite", readonly=True)
    for call in traces.calls("agent = 'writer'"):
        sent = "\n".join(m["content"] for m in traces.messages(call))
        assert EVAL[1]["question"] not in sent  # the other item never reaches a prompt
    dec = result.report["decontamination"]
    assert dec["caught"] == len(dataset) and dec["rejected"] == 0
    traces.close()

    index = NoveltyIndex(result.run_dir / "chroma")
    assert index.ids(SAMPLES) == {s["id"] for s in dataset}  # no avoid item among samples
    assert index.ids(AVOID) == {"evals/test.jsonl#0", "evals/test.jsonl#1"}


def test_a_paraphrase_too_similar_to_an_item_is_contaminated(
    make_spec, tmp_path: Path, endpoint
) -> None:
    endpoint.responder = CopyingWriter(EVAL[0]["question"], shuffle=True, every=2)
    spec = spec_with_avoid(make_spec, tmp_path, critic={"min_score": 3, "max_revisions": 0})
    result = run(spec, out=tmp_path / "run", notice=lambda text: None)
    dirty = [
        r for r in read_jsonl(result.run_dir / "rejected.jsonl") if r["reason"] == "contaminated"
    ]
    assert dirty
    for row in dirty:
        assert row["contamination"]["match"] == "similar"
        assert row["contamination"]["item"] == "evals/test.jsonl#0"
        assert row["contamination"]["similarity"] >= 0.9
        assert row["critic"]["score"] == 4  # the critic passed it; the avoid set did not
    assert result.report["decontamination"]["by_kind"]["similar"] == len(dirty)


def test_a_missing_avoid_file_stops_run_before_the_run_directory(
    make_spec, tmp_path: Path, capsys
) -> None:
    spec = make_spec(name="noavoid", novelty={"avoid": ["evals/gone.txt"]})
    assert main(["run", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert "novelty.avoid[0].path: no file matches 'evals/gone.txt'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
