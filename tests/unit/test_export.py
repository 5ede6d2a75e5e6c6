"""``personaloom export``: a small run exported in every format and read back with the real
``datasets`` library and pyarrow, its dataset card, and the refusals (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard

from personaloom.cli import main
from personaloom.local.server import MODEL_ALIAS
from personaloom.store import read_jsonl


def _run(make_spec, tmp_path: Path, name: str = "run", **sections) -> Path:
    run_dir = tmp_path / name
    code = main(["run", str(make_spec(**sections)), "--out", str(run_dir), "--events"])
    assert code in (0, 3), code
    return run_dir


@pytest.fixture
def run_dir(make_spec, tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    path = _run(make_spec, tmp_path)
    capsys.readouterr()
    return path


def _export(run_dir: Path, out: Path, *flags: str) -> int:
    return main(["export", str(run_dir), "--out", str(out), *flags])


def _card(out: Path) -> tuple[dict, str]:
    text = (out / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_parquet_shards_load_with_pyarrow_and_datasets(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert _export(run_dir, out, "--format", "parquet", "--shard-rows", "3") == 0
    samples = read_jsonl(run_dir / "dataset.jsonl")
    shards = sorted((out / "data").glob("train-*.parquet"))
    assert [s.name for s in shards] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    table = pq.read_table(shards[0])
    assert table.column_names == [
        "id", "title", "story", "persona", "persona_id", "traits", "words", "critic", "novelty",
        "lineage",
    ]  # fmt: skip
    # The card's `configs` name the shards: load_dataset on the folder finds the train split.
    train = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(train) == len(samples) == 4
    for row, sample in zip(train, samples, strict=True):
        assert row["id"] == sample["id"]
        assert row["story"] == sample["output"]["story"]
        assert row["persona"] == sample["persona"]["text"]
        assert row["traits"] == sample["traits"]
        assert row["critic"]["score"] == sample["critic"]["score"]
        assert row["lineage"]["persona_ids"] == sample["lineage"]["persona_ids"]
        assert row["lineage"]["source_text_id"] == sample["lineage"]["source_text_id"]


def test_hf_folder_opens_with_load_from_disk(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf-export"
    assert _export(run_dir, out, "--format", "hf") == 0
    train = datasets.load_from_disk(str(out))["train"]
    samples = read_jsonl(run_dir / "dataset.jsonl")
    assert train["id"] == [s["id"] for s in samples]
    assert train.features["traits"] == {
        "feature": datasets.Value("string"),
        "setting": datasets.Value("string"),
    }
    assert train[0]["words"] == samples[0]["words"]
    assert _card(out)[0]["configs"][0]["data_files"][0]["path"] == "train/data-*.arrow"
    hub_style = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert hub_style["id"] == train["id"]  # the card's configs work for this layout too
    # The manifest lists what the export wrote, and only that: a second --force removes it
    # and keeps a file of the user's.
    (out / "mine.txt").write_text("keep")
    assert _export(run_dir, out, "--format", "hf", "--force") == 0
    assert _export(run_dir, out, "--format", "hf", "--force") == 0
    files = json.loads((out / "personaloom-export.json").read_text())["files"]
    assert files[0] == "dataset_dict.json" and "mine.txt" not in files
    assert (out / "mine.txt").read_text() == "keep"
    assert len(datasets.load_from_disk(str(out))["train"]) == len(samples)


def test_jsonl_and_chat_formats(run_dir: Path, tmp_path: Path, capsys) -> None:
    samples = read_jsonl(run_dir / "dataset.jsonl")
    assert _export(run_dir, tmp_path / "j", "--format", "jsonl") == 0
    rows = read_jsonl(tmp_path / "j" / "data" / "train.jsonl")
    assert [r["title"] for r in rows] == [s["output"]["title"] for s in samples]
    assert rows[0]["lineage"]["relation"] == samples[0]["lineage"]["relation"]

    flags = ["--format", "chat", "--chat", "user=title, assistant=story", "--system", "Be kind."]
    assert _export(run_dir, tmp_path / "c", *flags) == 0
    chat = read_jsonl(tmp_path / "c" / "data" / "train.jsonl")
    assert chat[1] == {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": samples[1]["output"]["title"]},
            {"role": "assistant", "content": samples[1]["output"]["story"]},
        ]
    }
    train = datasets.load_dataset(str(tmp_path / "c"), split="train", cache_dir=str(tmp_path / "h"))
    assert train.column_names == ["messages"] and len(train) == len(samples)
    _, body = _card(tmp_path / "c")
    assert "- `assistant`: the output field `story`" in body


def test_chat_mapping_errors_name_the_option(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert (
        _export(run_dir, tmp_path / "a", "--format", "chat", "--chat", "user=title,assistant=x")
        == 2
    )
    assert "--chat: 'x' is not an output field" in capsys.readouterr().err
    assert _export(run_dir, tmp_path / "b", "--format", "chat", "--chat", "user=title") == 2
    assert "needs a user and an assistant" in capsys.readouterr().err
    assert _export(run_dir, tmp_path / "c", "--format", "chat", "--chat", "bot=title") == 2
    assert "role 'bot'" in capsys.readouterr().err
    assert _export(run_dir, tmp_path / "d", "--format", "chat", "--system", "Hi.") == 2
    assert "--format chat needs --chat" in capsys.readouterr().err
    assert _export(run_dir, tmp_path / "e", "--chat", "user=title,assistant=story") == 2
    assert "--chat and --system are for --format chat only" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abcde")  # nothing written on a refusal


def test_card_header_and_body_come_from_the_run(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    flags = ["--license", "cc-by-4.0", "--task-category", "text-generation"]
    assert _export(run_dir, out, *flags, "--task-category", "summarization") == 0
    header, body = _card(out)
    assert header["license"] == "cc-by-4.0"
    hub_card = DatasetCard.load(out / "README.md")  # the Hub client's own parser
    assert hub_card.data.license == "cc-by-4.0" and hub_card.data.pretty_name == "unit"
    assert header["task_categories"] == ["text-generation", "summarization"]
    assert header["size_categories"] == ["n<1K"]
    assert header["configs"] == [
        {
            "config_name": "default",
            "data_files": [{"split": "train", "path": "data/train-*.parquet"}],
        }
    ]
    report = json.loads((run_dir / "report.json").read_text())
    assert "“Write a short story.”" in body  # the spec in words
    assert "- **Trait `feature`**: assigned by the planner, confirmed by the critic" in body
    assert "| writer | gpt-4o-mini at http://127.0.0.1:" in body  # models
    assert "| dialogue | 2 | 2 |" in body  # coverage table
    assert f"| Vendi score | {report['diversity']['vendi_score']:.1f} |" in body
    assert "| `lineage` | struct of persona_ids, source_text_id" in body
    assert "## Limits" in body and "No licence was chosen" not in body
    assert "SmolLM2" not in body
    assert (out / "coverage.png").read_bytes() == (run_dir / "coverage.png").read_bytes()


def test_card_says_the_tiny_model_and_ungated_critic(make_spec, tmp_path: Path) -> None:
    """A demo-like run (the embedded model's name, no trait check, a score bar of 1) ending on
    its budget: the card's limits say each of those."""
    run_dir = tmp_path / "demo-like"
    path = make_spec(
        critic={"min_score": 1, "check_traits": False, "max_revisions": 1},
        budget={"max_calls": 6},
    )
    data = yaml.safe_load(path.read_text())
    data["models"]["default"]["model"] = MODEL_ALIAS
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--out", str(run_dir), "--events"]) == 3
    assert _export(run_dir, tmp_path / "out") == 0
    _, body = _card(tmp_path / "out")
    limits = body.split("## Limits", 1)[1]
    assert "Made with personaloom's embedded model, SmolLM2-135M-Instruct" in limits
    assert "did not confirm the assigned traits" in limits
    assert "score did not gate acceptance" in limits
    assert "ended `budget` (max_calls) before every target was met" in limits
    assert "No licence was chosen" in limits


def test_an_export_never_holds_an_api_key(
    make_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker, env_marker = "sk-MARKER-in-spec-7f3a", "sk-MARKER-in-env-91c2"
    monkeypatch.setenv("OPENAI_API_KEY", env_marker)
    path = make_spec()
    data = yaml.safe_load(path.read_text())
    data["models"]["default"]["api_key"] = marker
    path.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "keyed"
    assert main(["run", str(path), "--out", str(run_dir), "--events"]) == 0
    chat = ["--chat", "user=title,assistant=story", "--system", "hi"]
    for fmt, extra in [("parquet", []), ("hf", []), ("jsonl", []), ("chat", chat)]:
        out = tmp_path / f"export-{fmt}"
        assert _export(run_dir, out, "--format", fmt, *extra) == 0
        files = [p for p in out.rglob("*") if p.is_file()]
        assert len(files) >= 3
        for file in files:
            blob = file.read_bytes()
            assert marker.encode() not in blob and env_marker.encode() not in blob, file


def test_refuses_a_non_empty_out_unless_force(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "export"
    assert _export(run_dir, out, "--shard-rows", "1") == 0
    assert len(list((out / "data").glob("*.parquet"))) == 4
    (out / "notes.txt").write_text("mine\n")
    assert _export(run_dir, out) == 2
    assert "is not empty; choose another folder or add --force" in capsys.readouterr().err
    assert len(list((out / "data").glob("*.parquet"))) == 4  # untouched
    assert _export(run_dir, out, "--force") == 0
    # The previous export's shards are gone (load_dataset would read them with the new one);
    # a file it did not write stays.
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    assert (out / "notes.txt").read_text() == "mine\n"
    assert len(datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "h"))) == 4


def test_a_run_dir_that_is_not_one_or_is_empty(make_spec, tmp_path: Path, capsys) -> None:
    assert _export(tmp_path / "nowhere", tmp_path / "o1") == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert _export(tmp_path / "plain", tmp_path / "o2") == 2
    assert "is not a run directory (no run.json)" in capsys.readouterr().err
    empty = _run(make_spec, tmp_path, "empty", budget={"max_calls": 1})
    capsys.readouterr()
    assert _export(empty, tmp_path / "o3") == 2
    assert "has no accepted samples" in capsys.readouterr().err
    assert _export(empty, empty, "--force") == 2
    assert not (tmp_path / "o3").exists()


def test_a_metadata_column_an_output_field_already_names(make_spec, tmp_path: Path) -> None:
    """An NPC task with its own `persona` field keeps it; the writer's persona becomes
    `sample_persona`."""
    task = {
        "instruction": "Write a game character.",
        "output": {"persona": "str", "story": "str"},
        "length": {"min_words": 10, "max_words": 400},
    }
    run_dir = _run(make_spec, tmp_path, task=task)
    out = tmp_path / "export"
    assert _export(run_dir, out) == 0
    table = pq.read_table(out / "data" / "train-00000-of-00001.parquet")
    samples = read_jsonl(run_dir / "dataset.jsonl")
    assert table.column("persona").to_pylist()[0] == samples[0]["output"]["persona"]
    assert table.column("sample_persona").to_pylist()[0] == samples[0]["persona"]["text"]


def test_a_running_run_is_refused_and_an_interrupted_one_exported(
    run_dir: Path, tmp_path: Path, capsys
) -> None:
    """run.json says running: while a process holds the run's lock it is refused (its files
    still grow); once none does, the run was cut short and exports as `interrupted`."""
    from personaloom.runlock import RunLock

    meta = json.loads((run_dir / "run.json").read_text())
    meta["status"] = "running"
    (run_dir / "run.json").write_text(json.dumps(meta))
    lock = RunLock(run_dir).acquire()
    try:
        assert _export(run_dir, tmp_path / "o1") == 2
        assert "is still running; use it once it has stopped" in capsys.readouterr().err
    finally:
        lock.release()
    assert _export(run_dir, tmp_path / "o2") == 0
    assert "status **interrupted**" in _card(tmp_path / "o2")[1]
