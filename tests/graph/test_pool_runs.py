"""Runs of the compiled graph with a persona pool, against the scripted endpoint: targets on
pool columns met with no labelling call, lineage to file and row, dedup at the persona
threshold, a seeded sample, and a pool combined with mining."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from personaloom.pool import match_value, read_pool
from personaloom.runner import run
from personaloom.spec import load_spec
from personaloom.store import read_jsonl

JOBS = ["nurse", "teacher", "farmer"]
AGES = ["18-29", "30-49", "50+"]
PERSONA_TRAITS = {
    "occupation": {"values": JOBS, "target": 2, "source": "persona"},
    "age": {"values": AGES, "target": 2, "source": "persona"},
}


def pool_rows(n: int) -> list[dict[str, Any]]:
    cities = ["Lisbon", "Osaka", "Cork", "Tbilisi", "Lagos", "Busan", "Seville"]
    hobbies = ["chess", "beekeeping", "opera", "rowing", "pottery", "astronomy", "salsa"]
    return [
        {
            "input persona": f"A {JOBS[i % 3]} in {cities[i % 7]} devoted to {hobbies[(i // 7) % 7]}.",
            "occupation": JOBS[i % 3],
            "age": 20 + (i * 11) % 55,
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pool_traits_meet_targets_with_no_labelling_call(
    make_spec, tmp_path: Path, responder
) -> None:
    rows = pool_rows(30)
    spec_path = make_spec(
        name="pool",
        corpus=[],
        personas={
            "pool": {
                "path": "pool.jsonl",
                "field": "input persona",
                "traits": ["occupation", "age"],
            },
            "max_uses": 1,
        },
        traits=PERSONA_TRAITS,
        vocabulary={},
    )
    write_jsonl(spec_path.parent / "pool.jsonl", rows)
    result = run(spec_path, out=tmp_path / "run", notice=lambda text: None)
    assert result.status == "complete", result.stop_reason
    assert responder.calls["PersonaList"] == 0 and responder.calls["RelatedPersonaList"] == 0
    for trait in ("occupation", "age"):
        for entry in result.report["coverage"][trait].values():
            assert entry["status"] == "met"
    personas = {p["id"]: p for p in read_jsonl(result.run_dir / "personas.jsonl")}
    assert len(personas) == 30 and all(p["relation"] == "pool" for p in personas.values())
    for sample in read_jsonl(result.run_dir / "dataset.jsonl"):
        origin = sample["lineage"]["pool"]
        assert origin["file"] == "pool.jsonl"
        row = rows[origin["row"]]
        assert sample["persona"]["text"] == row["input persona"]
        assert sample["traits"] == {
            "occupation": row["occupation"],
            "age": match_value(row["age"], AGES),
        }


def test_pool_personas_are_deduplicated_at_the_persona_threshold(make_spec, tmp_path: Path) -> None:
    rows = pool_rows(12)
    rows[5]["input persona"] = rows[0]["input persona"]  # the same person twice
    rows[9]["input persona"] = rows[3]["input persona"].upper()  # same words, other case
    spec_path = make_spec(
        name="dedup",
        corpus=[],
        personas={"pool": {"path": "pool.parquet", "field": "input persona"}, "max_uses": 4},
        traits={},
        vocabulary={},
        total=2,
    )
    pq.write_table(pa.Table.from_pylist(rows), spec_path.parent / "pool.parquet")
    result = run(spec_path, out=tmp_path / "run", notice=lambda text: None)
    personas = read_jsonl(result.run_dir / "personas.jsonl")
    assert sorted(p["pool"]["row"] for p in personas) == [r for r in range(12) if r not in (5, 9)]


def test_a_seeded_sample_of_the_pool_enters_the_run(make_spec, tmp_path: Path) -> None:
    spec_path = make_spec(
        name="sampled",
        corpus=[],
        personas={
            "pool": {"path": "pool.jsonl", "field": "input persona", "sample": 6},
            "relate_depth": 0,
            "max_uses": 2,
        },
        traits={},
        vocabulary={},
        total=3,
        seed=11,
    )
    write_jsonl(spec_path.parent / "pool.jsonl", pool_rows(200))
    expected = [p["pool"]["row"] for p in read_pool(load_spec(spec_path), 0).personas]
    runs = [run(spec_path, out=tmp_path / f"run{i}", notice=lambda text: None) for i in range(2)]
    for result in runs:
        rows = [p["pool"]["row"] for p in read_jsonl(result.run_dir / "personas.jsonl")]
        assert rows == expected and len(rows) == 6
    events = _events(runs[0].run_dir, "pool_loaded")
    assert events[-1]["rows"] == 200 and events[-1]["personas"] == 6


def _events(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    from personaloom.traces import TraceStore

    traces = TraceStore(run_dir / "traces.sqlite", readonly=True)
    try:
        return [e["data"] for e in traces.events(kind)]
    finally:
        traces.close()


def test_a_pool_and_mining_combined(make_spec, tmp_path: Path, responder) -> None:
    """Two pool personas, used once each, then personas mined from the corpus; a persona
    trait only the pool's column gives is labelled by the miner for mined personas."""
    spec_path = make_spec(
        name="both",
        personas={
            "pool": {"path": "pool.csv", "field": "persona", "traits": {"occupation": "job"}},
            "per_text": 2,
            "relate_depth": 0,
            "max_uses": 1,
        },
        traits={"occupation": {"values": JOBS, "target": 2, "source": "persona"}},
        vocabulary={},
    )
    (spec_path.parent / "pool.csv").write_text(
        "persona,job\nA nurse who sings in a choir on Sundays,Nurse\n"
        "A farmer raising rare sheep on a windy island,farmer\n"
    )
    result = run(spec_path, out=tmp_path / "run", notice=lambda text: None)
    assert result.status == "complete", result.stop_reason
    personas = read_jsonl(result.run_dir / "personas.jsonl")
    assert [p.get("pool", {}).get("row") for p in personas[:2]] == [0, 1]
    assert personas[0]["traits"] == {"occupation": "nurse"}
    mined = [p for p in personas if "pool" not in p]
    assert mined and all(p["source_text_id"].startswith("corpus/") for p in mined)
    assert responder.calls["PersonaList"] > 0
    writers = Counter(
        "pool" if "pool" in s["lineage"] else "mined"
        for s in read_jsonl(result.run_dir / "dataset.jsonl")
    )
    assert writers["pool"] >= 1 and writers["mined"] >= 1
