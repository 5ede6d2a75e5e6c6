"""Avoid sets (``novelty.avoid``): items read from text, JSONL, CSV, Parquet and ``datasets``
files, the word n-gram check as GPT-3's decontamination did it, and bad files named by
``personaloom validate`` with exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from personaloom.avoid import AvoidItem, AvoidSet, load_avoid
from personaloom.cli import main
from personaloom.spec import load_spec

QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?"
)
ANSWER = "Natalia sold 48/2 = 24 clips in May, so 48 + 24 = 72 clips in April and May."


def write_spec(folder: Path, avoid: Any, **novelty: Any) -> Path:
    (folder / "corpus.txt").write_text("A text to mine personas from.\n")
    spec = {
        "name": "avoid",
        "task": {"instruction": "Write a math problem.", "output": {"problem": "str"}},
        "corpus": [{"path": "corpus.txt"}],
        "total": 2,
        "novelty": {"avoid": avoid, **novelty},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def avoid_set(*texts: str, ngram: int | None = 13) -> AvoidSet:
    return AvoidSet([AvoidItem(f"evals.txt#{i}", (t,)) for i, t in enumerate(texts)], ngram)


def test_a_draft_sharing_13_words_with_an_item_is_caught() -> None:
    index = avoid_set(QUESTION)
    draft = "Here is mine: NATALIA sold clips to 48 of her friends in april; and then she sold HALF"
    found = index.overlap(["A title", draft])
    assert found is not None and found.item.id == "evals.txt#0"
    assert found.phrase == "NATALIA sold clips to 48 of her friends in april; and then she"
    # Twelve shared words in a row are not enough.
    assert index.overlap(["clips to 48 of her friends in April, and then she sold"]) is None
    assert index.overlap(["Natalia sold clips to 48 friends in April and then sold half"]) is None


def test_the_ngram_size_is_configurable_and_can_be_turned_off() -> None:
    draft = "Natalia sold clips to 48 of her friends"
    assert avoid_set(QUESTION, ngram=8).overlap([draft]) is not None
    assert avoid_set(QUESTION, ngram=13).overlap([draft]) is None
    off = avoid_set(QUESTION, ngram=None)
    assert off.ngrams == 0 and off.overlap([QUESTION]) is None


def test_short_items_match_whole_or_not_at_all() -> None:
    index = avoid_set(
        "What is the capital city of the country France",  # 9 words: matched whole
        "What is two plus two",  # 5 words: similarity only
    )
    assert index.overlap(["So, what is the capital city of the country France, then?"])
    assert index.overlap(["what is the capital city of the country"]) is None
    assert index.overlap(["Tell me: what is two plus two?"]) is None


def test_fields_are_not_joined_into_one_run_of_words() -> None:
    """An n-gram never spans two fields of an item or of a draft."""
    index = AvoidSet(
        [AvoidItem("q#0", ("one two three four five six seven", "eight nine ten"))], 10
    )
    assert index.overlap(["one two three four five six seven eight nine ten"]) is None
    assert index.overlap(["one two three four five six seven", "eight nine ten"]) is None


def test_items_from_every_format(tmp_path: Path) -> None:
    (tmp_path / "heldout.txt").write_text(f"{QUESTION}\n\n   \nWhat is two plus two?\n")
    rows = [{"question": QUESTION, "answer": ANSWER}, {"question": "", "answer": None}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "test-ds"))
    avoid = [
        "heldout.txt",
        {"path": "test.jsonl", "field": ["question", "answer"]},
        {"path": "test.parquet", "field": "question"},
        {"path": "test-ds", "field": "answer"},
    ]
    spec = load_spec(write_spec(tmp_path, avoid))
    index = load_avoid(spec)
    assert index is not None
    items = {item.id: item for item in index.items}
    assert set(items) == {
        "heldout.txt#0",
        "heldout.txt#1",
        "test.jsonl#0",
        "test.parquet#0",
        "test-ds#0",
    }
    assert items["test.jsonl#0"].texts == (QUESTION, ANSWER)
    assert items["test-ds#0"].text == ANSWER
    found = index.overlap(["Well, Natalia sold 48 / 2 = 24 clips in May, so 48+24 = 72 clips."])
    assert found is not None and found.item.id in ("test.jsonl#0", "test-ds#0")


# -- bad input ---------------------------------------------------------------------------------


def validate(spec: Path, capsys) -> str:
    assert main(["validate", str(spec)]) == 2
    return capsys.readouterr().err


def test_a_missing_avoid_file(tmp_path: Path, capsys) -> None:
    err = validate(write_spec(tmp_path, ["evals/gsm8k.jsonl"]), capsys)
    assert "novelty.avoid[0].path: no file matches 'evals/gsm8k.jsonl'" in err


def test_a_missing_avoid_field(tmp_path: Path, capsys) -> None:
    pq.write_table(pa.Table.from_pylist([{"question": QUESTION}]), tmp_path / "test.parquet")
    err = validate(write_spec(tmp_path, [{"path": "test.parquet", "field": "prompt"}]), capsys)
    assert "novelty.avoid[0].field:" in err and "no column 'prompt' (columns: question)" in err


def test_a_jsonl_avoid_file_without_the_field_holds_no_item(tmp_path: Path, capsys) -> None:
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": QUESTION}) + "\n")
    err = validate(write_spec(tmp_path, [{"path": "test.jsonl"}]), capsys)  # field: text
    assert "novelty.avoid[0].field:" in err and "test.jsonl: no item" in err and "'text'" in err


def test_a_binary_avoid_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "test.txt").write_bytes(b"\0\1\2\3" * 100)
    err = validate(write_spec(tmp_path, ["test.txt"]), capsys)
    assert "novelty.avoid[0].path:" in err and "test.txt is binary" in err


def test_an_avoid_file_that_is_not_utf8(tmp_path: Path, capsys) -> None:
    (tmp_path / "test.txt").write_bytes(
        "Quelle est la capitale de la Belgique ?\n".encode("utf-16")
    )
    err = validate(write_spec(tmp_path, ["test.txt"]), capsys)
    assert "novelty.avoid[0].path:" in err and "test.txt" in err


def test_plain_text_has_no_fields(tmp_path: Path, capsys) -> None:
    (tmp_path / "test.txt").write_text(QUESTION + "\n")
    err = validate(write_spec(tmp_path, [{"path": "test.txt", "field": "question"}]), capsys)
    assert "novelty.avoid[0].field:" in err and "plain text, one item per line" in err


def test_an_unknown_extension_asks_for_a_format(tmp_path: Path, capsys) -> None:
    (tmp_path / "test.tsv").write_text("question\tanswer\n")
    err = validate(write_spec(tmp_path, ["test.tsv"]), capsys)
    assert "novelty.avoid[0].path:" in err and "set `format`" in err


def test_ngram_bounds(tmp_path: Path, capsys) -> None:
    (tmp_path / "test.txt").write_text(QUESTION + "\n")
    err = validate(write_spec(tmp_path, ["test.txt"], ngram=2), capsys)
    assert "novelty.ngram: Input should be greater than or equal to 3 (got 2)" in err
