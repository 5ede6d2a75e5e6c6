"""Persona pools from a user's side: every format reads the same personas, a seeded sample is
reproducible and streamed, trait columns become labels, and bad files are named with their
field by ``personaloom validate`` (exit 2) before any LLM call."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from personaloom.cli import main
from personaloom.pool import load_pool, match_value, read_pool
from personaloom.spec import load_spec
from personaloom.tables import TableError, chunks

JOBS = ["nurse", "teacher", "farmer", "welder"]


def pool_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "input persona": f"A {JOBS[i % 4]} from village {i} who keeps {i % 7} goats.",
            "occupation": JOBS[i % 4].title(),  # "Nurse": matched to the value "nurse"
            "age": 18 + (i * 7) % 60,
        }
        for i in range(n)
    ]


def write_pool(folder: Path, fmt: str, rows: list[dict[str, Any]]) -> str:
    """The pool in one format; returns its path relative to ``folder``."""
    if fmt == "jsonl":
        (folder / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return "pool.jsonl"
    if fmt == "csv":
        with (folder / "pool.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return "pool.csv"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), folder / "pool.parquet", row_group_size=7)
        return "pool.parquet"
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(folder / "pool-ds"))
    return "pool-ds"


def write_spec(folder: Path, pool: dict[str, Any] | list[dict[str, Any]], **extra: Any) -> Path:
    spec = {
        "name": "pools",
        "task": {"instruction": "Write a short story.", "output": {"story": "str"}},
        "personas": {"pool": pool},
        "traits": {
            "occupation": {"values": JOBS, "target": 1, "source": "persona"},
            "age": {"values": ["18-29", "30-49", "50+"], "target": 1, "source": "persona"},
        },
        **extra,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


POOL = {"field": "input persona", "traits": ["occupation", "age"]}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "datasets"])
def test_every_format_reads_the_same_personas(tmp_path: Path, fmt: str) -> None:
    rows = pool_rows(30)
    name = write_pool(tmp_path, fmt, rows)
    spec = load_spec(write_spec(tmp_path, {"path": name, **POOL}))
    (read,) = load_pool(spec)
    assert read.rows == 30 and len(read.personas) == 30
    for persona in read.personas:
        row = persona["pool"]["row"]
        assert persona["pool"]["file"] == name
        assert persona["persona"] == rows[row]["input persona"]
        assert persona["traits"]["occupation"] == JOBS[row % 4]
        age = rows[row]["age"]
        want = "18-29" if age < 30 else "30-49" if age < 50 else "50+"
        assert persona["traits"]["age"] == want
        assert persona["relation"] == "pool" and persona["depth"] == 0


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_seeded_sample_is_reproducible_and_the_same_in_every_format(
    tmp_path: Path, fmt: str
) -> None:
    rows = pool_rows(500)
    name = write_pool(tmp_path, fmt, rows)
    spec = load_spec(write_spec(tmp_path, {"path": name, "sample": 12, **POOL}, seed=7))
    first = [p["pool"]["row"] for p in read_pool(spec, 0).personas]
    again = [p["pool"]["row"] for p in read_pool(spec, 0).personas]
    assert len(first) == 12 and first == again and first == sorted(first)
    assert len(set(first)) == 12
    # The same draws whatever the chunking: Parquet row groups of 7 rows, JSONL chunks of 8192.
    other = tmp_path / "other"
    other.mkdir()
    write_pool(other, "csv", rows)
    csv_spec = load_spec(write_spec(other, {"path": "pool.csv", "sample": 12, **POOL}, seed=7))
    assert [p["pool"]["row"] for p in read_pool(csv_spec, 0).personas] == first
    reseeded = load_spec(write_spec(tmp_path, {"path": name, "sample": 12, **POOL}, seed=8))
    assert [p["pool"]["row"] for p in read_pool(reseeded, 0).personas] != first


def test_sampling_is_uniform_over_usable_rows(tmp_path: Path) -> None:
    """Rows without a persona are never drawn, and every usable row is equally likely."""
    rows = pool_rows(40)
    for row in rows[::2]:
        row["input persona"] = "  "  # unusable
    name = write_pool(tmp_path, "jsonl", rows)
    counts = [0] * 40
    for seed in range(400):
        spec = load_spec(write_spec(tmp_path, {"path": name, "sample": 5, **POOL}, seed=seed))
        for persona in read_pool(spec, 0).personas:
            counts[persona["pool"]["row"]] += 1
    assert all(c == 0 for c in counts[::2])
    drawn = counts[1::2]  # 20 usable rows, 5 of them per draw: 100 draws each expected
    assert sum(drawn) == 400 * 5
    assert min(drawn) > 60 and max(drawn) < 140


def _sampling_peak(folder: Path, rows: int) -> tuple[int, int]:
    """Peak memory traced while sampling 20 of ``rows`` JSONL rows, and the file's size."""
    folder.mkdir()
    path = folder / "big.jsonl"
    with path.open("w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"persona": f"Person {i} " + "who likes long walks " * 5}))
            handle.write("\n")
    spec = load_spec(write_spec(folder, {"path": "big.jsonl", "sample": 20}, traits={}, total=5))
    tracemalloc.start()
    try:
        read = read_pool(spec, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read.rows == rows and len(read.personas) == 20
    return peak, path.stat().st_size


def test_a_large_jsonl_pool_is_sampled_in_a_stream(tmp_path: Path) -> None:
    """Memory does not grow with the file: three times the rows, about the same peak."""
    small, _ = _sampling_peak(tmp_path / "small", 30_000)
    big, size = _sampling_peak(tmp_path / "big", 90_000)
    assert big < 1.3 * small, f"peak {small:,} bytes for 30,000 rows, {big:,} for 90,000"
    assert big < size / 3, f"peak {big:,} bytes for a {size:,}-byte file"


def _parquet_peak(folder: Path, rows: int, group: int) -> tuple[int, int]:
    """Arrow memory held at most while streaming a Parquet file, and its column's size."""
    folder.mkdir()
    texts = [f"Person {i} " + "with a long description " * 8 for i in range(rows)]
    table = pa.table({"persona": texts, "other": list(range(rows))})
    pq.write_table(table, folder / "big.parquet", row_group_size=group)
    size = table.column("persona").nbytes
    del table, texts
    held = []
    for chunk in chunks(folder / "big.parquet", "parquet", ["persona"]):
        assert chunk.size <= 8192
        held.append(pa.total_allocated_bytes())
    return max(held), size


def test_parquet_is_streamed_within_and_across_row_groups(tmp_path: Path) -> None:
    """Four times the rows, the same memory: across row groups of 2,000 rows, and within
    one row group of all of them (page by page, not the group read whole)."""
    small, _ = _parquet_peak(tmp_path / "small", 50_000, 2_000)
    big, size = _parquet_peak(tmp_path / "big", 200_000, 2_000)
    one_small, _ = _parquet_peak(tmp_path / "one-small", 50_000, 50_000)
    one_big, _ = _parquet_peak(tmp_path / "one-big", 200_000, 200_000)
    assert big < 1.3 * small and one_big < 1.3 * one_small, (small, big, one_small, one_big)
    assert max(big, one_big) < size / 5, f"{max(big, one_big):,} bytes held for {size:,}"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("Nurse", "nurse"),
        (" nurse ", "nurse"),
        (34, "30-49"),
        (29.0, "18-29"),
        ("71", "50+"),
        (17, None),
        ("pilot", None),
        (None, None),
    ],
)
def test_trait_cells_match_values_and_ranges(cell: Any, expected: str | None) -> None:
    assert match_value(cell, ["nurse", "18-29", "30-49", "50+"]) == expected


def test_a_pool_source_given_alone_or_in_a_list(tmp_path: Path) -> None:
    name = write_pool(tmp_path, "jsonl", pool_rows(4))
    one = load_spec(write_spec(tmp_path, {"path": name, **POOL}))
    listed = load_spec(write_spec(tmp_path, [{"path": name, **POOL}]))
    assert one.personas.pool == listed.personas.pool


# -- bad input: validate names the file and the field, exit 2 ---------------------------------


def validate(spec: Path, capsys) -> str:
    assert main(["validate", str(spec)]) == 2
    return capsys.readouterr().err


def test_a_missing_pool_file(tmp_path: Path, capsys) -> None:
    err = validate(write_spec(tmp_path, {"path": "nowhere.jsonl", **POOL}), capsys)
    assert "personas.pool[0].path: no file matches 'nowhere.jsonl'" in err


@pytest.mark.parametrize("fmt", ["csv", "parquet", "datasets"])
def test_a_missing_persona_column(tmp_path: Path, fmt: str, capsys) -> None:
    name = write_pool(tmp_path, fmt, pool_rows(5))
    err = validate(
        write_spec(tmp_path, {"path": name, "field": "persona"}, traits={}, total=2), capsys
    )
    assert "personas.pool[0].field:" in err and name in err
    assert "no column 'persona'" in err and "input persona" in err  # the columns it has


def test_a_missing_trait_column(tmp_path: Path, capsys) -> None:
    name = write_pool(tmp_path, "parquet", pool_rows(5))
    pool = {"path": name, "field": "input persona", "traits": {"occupation": "job", "age": "age"}}
    err = validate(write_spec(tmp_path, pool), capsys)
    assert "personas.pool[0].traits.occupation:" in err and "no column 'job'" in err


def test_a_jsonl_pool_without_the_field_has_no_usable_persona(tmp_path: Path, capsys) -> None:
    name = write_pool(tmp_path, "jsonl", pool_rows(5))
    err = validate(
        write_spec(tmp_path, {"path": name, "field": "persona"}, traits={}, total=2), capsys
    )
    assert "personas.pool[0].field:" in err and "pool.jsonl: no usable persona" in err
    assert "'persona'" in err


def test_a_pool_of_empty_personas(tmp_path: Path, capsys) -> None:
    rows = [{"persona": " "}, {"persona": None}, {"persona": 3}]
    (tmp_path / "empty.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = validate(write_spec(tmp_path, {"path": "empty.jsonl"}, traits={}, total=2), capsys)
    assert "personas.pool[0].field:" in err and "no usable persona" in err


def test_a_binary_pool_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "pool.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" * 50)
    err = validate(write_spec(tmp_path, {"path": "pool.jsonl", **POOL}), capsys)
    assert "personas.pool[0].path:" in err and "pool.jsonl is binary" in err


def test_a_pool_file_that_is_not_utf8(tmp_path: Path, capsys) -> None:
    (tmp_path / "pool.csv").write_bytes("input persona\nune infirmière à Liège\n".encode("latin-1"))
    err = validate(
        write_spec(tmp_path, {"path": "pool.csv", "field": "input persona"}, traits={}, total=1),
        capsys,
    )
    assert "personas.pool[0].path:" in err and "pool.csv is not UTF-8" in err


def test_a_file_that_is_not_parquet(tmp_path: Path, capsys) -> None:
    (tmp_path / "pool.parquet").write_text('{"persona": "a nurse"}\n')
    err = validate(write_spec(tmp_path, {"path": "pool.parquet"}, traits={}, total=1), capsys)
    assert "personas.pool[0].path:" in err and "pool.parquet is not a Parquet file" in err


def test_a_datasets_folder_of_several_splits(tmp_path: Path, capsys) -> None:
    import datasets

    split = datasets.Dataset.from_list(pool_rows(3))
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "hub"))
    err = validate(write_spec(tmp_path, {"path": "hub", **POOL}), capsys)
    assert "personas.pool[0].path:" in err and "several splits" in err and "hub/test" in err


def test_pool_traits_must_be_persona_traits(tmp_path: Path, capsys) -> None:
    name = write_pool(tmp_path, "jsonl", pool_rows(3))
    spec = write_spec(
        tmp_path,
        {"path": name, "field": "input persona", "traits": ["occupation"]},
        traits={"occupation": {"values": JOBS, "target": 1}},
    )
    err = validate(spec, capsys)
    assert "personas.pool[0].traits.occupation: set traits.occupation.source to `persona`" in err


def test_no_corpus_and_no_pool(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ntask: {instruction: w, output: {a: str}}\ntotal: 1\n")
    assert "give a `corpus` to mine personas from, or a `personas.pool`" in validate(spec, capsys)


def test_a_bad_row_past_what_validate_reads_stops_the_run_with_exit_2(
    tmp_path: Path, capsys
) -> None:
    """Validation reads up to the first usable persona; a damaged row further on is named
    with its line when the pool is read, before the run directory is made."""
    lines = [json.dumps(r) for r in pool_rows(10)]
    lines[6] = '{"input persona": "A nurse'  # cut short
    (tmp_path / "pool.jsonl").write_text("\n".join(lines) + "\n")
    spec = write_spec(tmp_path, {"path": "pool.jsonl", **POOL})
    assert main(["validate", str(spec)]) == 0
    capsys.readouterr()
    with pytest.raises(TableError, match=r"personas.pool\[0\]: .*pool.jsonl:7: invalid JSON"):
        load_pool(load_spec(spec))
    assert main(["run", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert "pool.jsonl:7: invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_no_mining_calls_are_counted_against_the_budget_of_a_pool(tmp_path: Path, capsys) -> None:
    """validate warns when the targets cannot fit budget.max_calls; a pool may supply every
    persona, so only a writer and a critic call per sample are sure to be needed."""
    name = write_pool(tmp_path, "jsonl", pool_rows(8))
    spec = write_spec(tmp_path, {"path": name, **POOL}, budget={"max_calls": 8})
    assert main(["validate", str(spec)]) == 0
    assert "warning" not in capsys.readouterr().err  # 4 samples: 8 calls at the least
    spec = write_spec(tmp_path, {"path": name, **POOL}, budget={"max_calls": 7})
    assert main(["validate", str(spec)]) == 0
    assert "at least 8 calls" in capsys.readouterr().err
