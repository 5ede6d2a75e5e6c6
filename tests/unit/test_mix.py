"""``personaloom mix``: real records and a run's samples under a cap on the synthetic share,
near-duplicates of real records dropped in the run's embedding space, seeded shuffle, the
composition report, and bad input (exit 2, naming the file, the field or the option)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personaloom.cli import main
from personaloom.mix import synthetic_allowed
from personaloom.store import read_jsonl

REAL_STORIES = [
    "Grandpa fixed the leaking roof of the barn while the goats watched from the mud.",
    "On Tuesday the library cat slept inside the returns box and nobody dared to move it.",
    "Nina planted sunflowers along the fence and measured them every morning before school.",
    "The night train stopped in a snowy village where a boy sold hot chestnuts at the window.",
    "A lighthouse keeper counted ships all winter and wrote their names in a blue notebook.",
    "Two brothers built a raft from old doors and floated it across the flooded meadow.",
    "The baker's daughter hid a tiny paper star inside every loaf on the first day of spring.",
]


@pytest.fixture
def run_dir(make_spec, tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    path = tmp_path / "run"
    assert main(["run", str(make_spec()), "--out", str(path), "--events"]) == 0
    capsys.readouterr()
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _real(tmp_path: Path, count: int = 7, copy_of: dict | None = None) -> Path:
    rows = [{"title": f"Real {i}", "text": s} for i, s in enumerate(REAL_STORIES[:count])]
    if copy_of:  # a real record that is one of the run's samples, word for word
        rows.append({"title": copy_of["output"]["title"], "text": copy_of["output"]["story"]})
    return _write_jsonl(tmp_path / "real.jsonl", rows)


def _mix(real: Path | str, run: Path, out: Path, share: str = "0.3", *flags: str) -> int:
    return main(
        [
            "mix",
            "--real",
            str(real),
            "--synthetic",
            str(run),
            "--max-synthetic-share",
            share,
            "--out",
            str(out),
            *flags,
        ]
    )


def test_the_share_stays_under_the_cap_and_near_duplicates_go(
    run_dir: Path, tmp_path: Path, capsys
) -> None:
    samples = read_jsonl(run_dir / "dataset.jsonl")
    real = _real(tmp_path, count=3, copy_of=samples[2])  # 4 real records, one a copy
    out = tmp_path / "mix"
    assert _mix(real, run_dir, out, "0.3", "--field", "story=text") == 0
    printed = capsys.readouterr().out
    rows = read_jsonl(out / "train.jsonl")
    # 4 real: at most floor(0.3 * 4 / 0.7) = 1 synthetic; 3 samples were eligible.
    assert [r["source"] for r in rows].count("real") == 4
    synthetic = [r for r in rows if r["source"] == "synthetic"]
    assert len(synthetic) == 1
    assert synthetic[0]["origin"] != f"run/{samples[2]['id']}"
    by_id = {f"run/{s['id']}": s for s in samples}
    assert synthetic[0]["story"] == by_id[synthetic[0]["origin"]]["output"]["story"]
    assert {r["origin"] for r in rows if r["source"] == "real"} == {
        f"{real}:{n}" for n in (1, 2, 3, 4)
    }
    dropped = read_jsonl(out / "dropped.jsonl")
    assert len(dropped) == 1 and dropped[0]["origin"] == f"run/{samples[2]['id']}"
    assert dropped[0]["nearest_real"] == f"{real}:4" and dropped[0]["similarity"] >= 0.9
    composition = json.loads((out / "composition.json").read_text())
    assert composition["real"] == 4 and composition["synthetic"] == 1
    assert composition["synthetic_share"] == 0.2 and composition["max_synthetic_share"] == 0.3
    assert composition["dropped_near_duplicates"] == 1 and composition["left_out_by_cap"] == 2
    assert composition["runs"][0]["embedder"] == "openai:scripted-embed"
    assert composition["runs"][0]["threshold"] == 0.9
    assert "5 records" in printed and "4 real, 1 synthetic (share 20.0%, cap 30.0%)" in printed
    assert "1 near-duplicates of a real record dropped" in printed


def test_the_cap_is_reached_exactly_and_the_shuffle_is_seeded(
    run_dir: Path, tmp_path: Path, capsys
) -> None:
    real = _real(tmp_path, count=7)
    args = ["--field", "story=text"]
    assert _mix(real, run_dir, tmp_path / "a", "0.3", *args, "--seed", "5") == 0
    assert _mix(real, run_dir, tmp_path / "b", "0.3", *args, "--seed", "5") == 0
    assert _mix(real, run_dir, tmp_path / "c", "0.3", *args, "--seed", "6") == 0
    a, b, c = (read_jsonl(tmp_path / n / "train.jsonl") for n in "abc")
    # 7 real and a cap of 0.3: exactly 3 synthetic (3/10), not the 2 that 0.3 as a float gives.
    assert [r["source"] for r in a].count("synthetic") == 3
    assert a == b
    assert [r["origin"] for r in a] != [r["origin"] for r in c]
    assert _mix(real, run_dir, tmp_path / "d", "0", *args) == 0
    assert {r["source"] for r in read_jsonl(tmp_path / "d" / "train.jsonl")} == {"real"}
    assert _mix(real, run_dir, tmp_path / "e", "1", *args) == 0
    assert len(read_jsonl(tmp_path / "e" / "train.jsonl")) == 7 + 4


@pytest.mark.parametrize("share", ["0", "0.05", "0.1", "0.25", "0.3", "1e-3", "0.5", "0.9"])
def test_synthetic_allowed_is_the_largest_count_under_the_cap(share: str) -> None:
    cap = Fraction(share)
    for real in range(0, 60):
        n = synthetic_allowed(real, cap)
        assert n is not None and (real + n == 0 or Fraction(n, real + n) <= cap)
        assert Fraction(n + 1, real + n + 1) > cap
    assert synthetic_allowed(5, Fraction(1)) is None


def test_csv_and_parquet_real_files(run_dir: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "real.csv"
    csv_file.write_text(
        "heading,body\n" + "".join(f'"Real {i}","{s}"\n' for i, s in enumerate(REAL_STORIES[:3]))
    )
    parquet = tmp_path / "real.parquet"
    table = pa.table({"title": ["P0", "P1"], "story": REAL_STORIES[3:5], "extra": [1, 2]})
    pq.write_table(table, parquet)
    out = tmp_path / "mix"
    flags = ["--real", str(parquet), "--field", "title=heading,story=body"]
    # One --field mapping applies to every --real file: the Parquet file has no `heading`.
    assert _mix(csv_file, run_dir, out, "0.5", *flags) == 2
    assert _mix(csv_file, run_dir, out, "0.5", "--field", "title=heading,story=body") == 0
    rows = read_jsonl(out / "train.jsonl")
    assert {r["origin"] for r in rows if r["source"] == "real"} == {
        f"{csv_file}:{n}" for n in (2, 3, 4)
    }
    assert _mix(parquet, run_dir, tmp_path / "mix-pq", "0.5") == 0
    rows = read_jsonl(tmp_path / "mix-pq" / "train.jsonl")
    assert sorted(r["title"] for r in rows if r["source"] == "real") == ["P0", "P1"]
    assert all(set(r) == {"title", "story", "source", "origin"} for r in rows)


def test_bad_input_names_the_file_field_or_option(run_dir: Path, tmp_path: Path, capsys) -> None:
    real = _real(tmp_path, count=2)
    out = tmp_path / "out"
    for share in ("1.5", "-0.1", "nan"):
        assert _mix(real, run_dir, out, share, "--field", "story=text") == 2
        assert "--max-synthetic-share" in capsys.readouterr().err
    assert _mix(real, run_dir, out) == 2
    assert f"{real}:1: no field 'story'" in capsys.readouterr().err
    assert _mix(real, run_dir, out, "0.3", "--field", "story=body") == 2
    assert f"{real}:1: no field 'body' (given by --field story=body)" in capsys.readouterr().err
    assert _mix(real, run_dir, out, "0.3", "--field", "plot=text") == 2
    assert "--field: 'plot' is not an output field" in capsys.readouterr().err
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert _mix(binary, run_dir, out, "0.3", "--field", "story=text") == 2
    assert f"--real {binary}: not UTF-8 text" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"title": "a", "text": "b"}\n{"title": \n')
    assert _mix(broken, run_dir, out, "0.3", "--field", "story=text") == 2
    assert f"{broken}:2: not a JSON line" in capsys.readouterr().err
    empty_text = _write_jsonl(tmp_path / "e.jsonl", [{"title": "a", "text": ""}])
    assert _mix(empty_text, run_dir, out, "0.3", "--field", "story=text") == 2
    assert f"{empty_text}:1: field 'text': expected non-empty str" in capsys.readouterr().err
    assert _mix(tmp_path / "r.txt", run_dir, out, "0.3") == 2
    assert "no such file" in capsys.readouterr().err
    assert _mix(real, tmp_path, out, "0.3", "--field", "story=text") == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert (
        main(
            ["mix", "--real", str(real), "--synthetic", str(run_dir), str(run_dir)]
            + ["--max-synthetic-share", "0.3", "--out", str(out)]
        )
        == 2
    )
    assert f"--synthetic {run_dir} is given twice" in capsys.readouterr().err
    assert not out.exists()  # nothing written on a refusal
    out.mkdir()
    (out / "x").write_text("keep")
    assert _mix(real, run_dir, out, "0.3", "--field", "story=text") == 2
    assert "not empty" in capsys.readouterr().err


def test_runs_of_different_tasks_do_not_mix(make_spec, run_dir: Path, tmp_path: Path, capsys):
    task = {"instruction": "Write a poem.", "output": {"poem": "str"}}
    other = tmp_path / "other"
    assert main(["run", str(make_spec("other", task=task)), "--out", str(other), "--events"]) == 0
    capsys.readouterr()
    real = _real(tmp_path, count=2)
    code = main(
        ["mix", "--real", str(real), "--synthetic", str(run_dir), str(other)]
        + ["--max-synthetic-share", "0.3", "--out", str(tmp_path / "m"), "--field", "story=text"]
    )
    assert code == 2
    assert (
        f"--synthetic {other}: its task's output fields ['poem'] differ" in capsys.readouterr().err
    )
