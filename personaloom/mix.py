"""``personaloom mix``: real records and runs' accepted samples in one training set, with the
synthetic share capped.

Training on synthetic data alone, generation after generation, collapses a model; keeping the
real data and adding synthetic data to it does not (Gerstgrasser et al. 2024, "Is Model
Collapse Inevitable?"). This is the "accumulate" side: real records are all kept, synthetic
samples are added up to ``max_share`` of the whole, and a synthetic sample that near-duplicates
a real record is dropped first (it would only repeat it, and may be a leaked copy). Each run's
samples are compared with the real records in that run's own embedding space, at its own
``novelty.threshold`` (its frozen spec.yaml), through the embedder the run used.
"""

from __future__ import annotations

import csv
import json
import math
import random
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from personaloom.errors import ConfigError
from personaloom.export import MANIFEST, prepare_out, read_samples
from personaloom.spec import Spec, output_fields
from personaloom.store import write_json_atomic

EMBED_BATCH = 256
TRAIN = "train.jsonl"
COMPOSITION = "composition.json"
DROPPED = "dropped.jsonl"


@dataclass
class Item:
    """One record of the mix: the task's output fields and where it came from."""

    fields: dict[str, Any]
    source: str  # "real" | "synthetic"
    origin: str  # path:line of a real record, run/sample-id of a synthetic one
    run: int | None = None  # a synthetic record's place in --synthetic


@dataclass
class RunPart:
    run_dir: Path
    spec: Spec
    items: list[Item]
    embedder: str = ""
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    kept: int = 0


# -- the cap ----------------------------------------------------------------------------------


def check_share(share: float) -> Fraction:
    """The cap as an exact fraction of its decimal (0.3 is 3/10, not the float under it)."""
    if not 0 <= share <= 1:  # NaN fails too
        raise ConfigError(
            f"--max-synthetic-share {share}: give the largest share of synthetic records "
            "in the mix, from 0 to 1 (e.g. 0.3)"
        )
    return Fraction(repr(share))


def synthetic_allowed(real: int, share: Fraction) -> int | None:
    """The most synthetic records beside ``real`` ones with ``synthetic / total <= share``
    (None: no limit, at a share of 1)."""
    if share >= 1:
        return None
    return math.floor(share * real / (1 - share))


# -- reading ----------------------------------------------------------------------------------


def parse_fields(text: str | None, fields: dict[str, Any]) -> dict[str, str]:
    """``--field question=prompt,answer=response`` -> {output field: real field}; output
    fields it does not name are read from the field of the same name."""
    mapping = {name: name for name in fields}
    for part in (p.strip() for p in (text or "").split(",") if p.strip()):
        target, sep, source = (s.strip() for s in part.partition("="))
        if not sep or not target or not source:
            raise ConfigError(f"--field {text!r}: give OUTPUT=REAL pairs, e.g. story=text")
        if target not in fields:
            raise ConfigError(
                f"--field: {target!r} is not an output field of the task (task.output has "
                f"{list(fields)})"
            )
        mapping[target] = source
    return mapping


def read_real(path: Path, mapping: dict[str, str], fields: dict[str, Any]) -> list[Item]:
    """The records of a JSONL, CSV or Parquet file as the task's output fields."""
    if not path.is_file():
        raise ConfigError(f"--real {path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = _jsonl_rows(path)
    elif suffix == ".csv":
        rows = _csv_rows(path)
    elif suffix == ".parquet":
        rows = _parquet_rows(path, sorted(set(mapping.values())))
    else:
        raise ConfigError(f"--real {path}: expected a .jsonl, .csv or .parquet file")
    return [
        Item(_mapped(row, mapping, fields, f"{path}:{where}"), "real", f"{path}:{where}")
        for where, row in rows
    ]


def _text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--real {path}: not UTF-8 text (is it a binary file?)") from None
    if "\x00" in text:
        raise ConfigError(f"--real {path}: holds NUL bytes (is it a binary file?)")
    return text


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not a JSON line ({exc})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object")
        rows.append((number, row))
    return rows


def _csv_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(_text(path).splitlines())
    return [(reader.line_num, dict(row)) for row in reader]


def _parquet_rows(path: Path, columns: list[str]) -> list[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise ConfigError(
            "Parquet input needs pyarrow: pip install 'personaloom[export]'"
        ) from None
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise ConfigError(f"--real {path}: not a Parquet file ({exc})") from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ConfigError(f"{path}: no column {missing[0]!r} (it has {schema.names})")
    table = pq.read_table(path, columns=columns)
    return [(i, row) for i, row in enumerate(table.to_pylist(), 1)]


def _mapped(
    row: dict[str, Any], mapping: dict[str, str], fields: dict[str, Any], where: str
) -> dict[str, Any]:
    record = {}
    for target, source in mapping.items():
        if source not in row:
            hint = (
                f"given by --field {target}={source}"
                if source != target
                else f"the output field of that name; name the field that holds it with "
                f"--field {target}=FIELD"
            )
            raise ConfigError(f"{where}: no field {source!r} ({hint})")
        record[target] = _typed(row[source], fields[target], f"{where}: field {source!r}")
    return record


def _typed(value: Any, kind: Any, where: str) -> Any:
    """The value as the output field's type; CSV's strings are converted."""
    if kind in (int, float) and isinstance(value, str):
        try:
            value = kind(value)
        except ValueError:
            raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from None
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if kind is str:
        ok = isinstance(value, str) and value.strip() != ""
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is bool:
        ok = isinstance(value, bool)
    else:  # list[str]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not ok:
        expected = "a list of strings" if kind not in (str, int, float, bool) else kind.__name__
        raise ConfigError(f"{where}: expected {'non-empty ' * (kind is str)}{expected}")
    return value


def read_run(run_dir: Path, index: int, fields: dict[str, Any] | None) -> RunPart:
    spec, _, _, samples = read_samples(run_dir)
    own = output_fields(spec.task.output)
    if fields is not None and own != fields:
        raise ConfigError(
            f"--synthetic {run_dir}: its task's output fields {list(own)} differ from "
            f"{list(fields)} of the first run; mix runs of one task"
        )
    items = [
        Item(
            {n: (s.get("output") or {}).get(n) for n in own},
            "synthetic",
            f"{run_dir.name}/{s['id']}",
            index,
        )
        for s in samples
    ]
    return RunPart(run_dir, spec, items)


# -- near-duplicates ----------------------------------------------------------------------------


def _embedders(runs: list[RunPart], stack: ExitStack) -> list[Any]:
    """Each run's embedder, as ``personaloom run`` builds it from the frozen spec (cached)."""
    from personaloom.embeddings import make_embedder
    from personaloom.endpoints import Overrides, resolve_endpoints
    from personaloom.llm.cache import open_cache

    embedders = []
    for part in runs:
        endpoints, _ = resolve_endpoints(part.spec)
        cache = open_cache(part.spec, stack)
        embedders.append(make_embedder(part.spec, Overrides(), endpoints, cache))
    return embedders


def _embed(embedder: Any, texts: list[str]) -> Any:
    import numpy as np

    vectors = []
    for start in range(0, len(texts), EMBED_BATCH):
        vectors.extend(embedder.embed(texts[start : start + EMBED_BATCH]))
    matrix = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def mark_near_duplicates(part: RunPart, real: list[Item], embedder: Any) -> list[Item]:
    """The run's samples under its novelty threshold to every real record; those at or above
    it go to ``part.near_duplicates`` with the real record they are close to."""
    from personaloom.records import text_of

    part.embedder = embedder.name
    if not part.items or not real:
        return list(part.items)
    spec = part.spec
    real_vectors = _embed(embedder, [text_of(spec, r.fields) for r in real])
    synthetic = _embed(embedder, [text_of(spec, s.fields) for s in part.items])
    kept = []
    for start in range(0, len(part.items), EMBED_BATCH):
        sims = synthetic[start : start + EMBED_BATCH] @ real_vectors.T
        for offset, row in enumerate(sims):
            item, nearest = part.items[start + offset], int(row.argmax())
            if row[nearest] >= spec.novelty.threshold:
                part.near_duplicates.append(
                    {
                        "origin": item.origin,
                        "nearest_real": real[nearest].origin,
                        "similarity": round(float(row[nearest]), 4),
                        "threshold": spec.novelty.threshold,
                    }
                )
            else:
                kept.append(item)
    return kept


# -- the mix ------------------------------------------------------------------------------------


def mix(
    real_files: list[Path],
    run_dirs: list[Path],
    *,
    max_share: float,
    out: Path,
    fields: str | None = None,
    seed: int = 0,
    force: bool = False,
) -> dict[str, Any]:
    """Write ``out/train.jsonl`` (shuffled with ``seed``), ``composition.json`` and
    ``dropped.jsonl``; returns the composition. Every input is read and checked first."""
    share = check_share(max_share)
    _once("--real", real_files)
    _once("--synthetic", run_dirs)
    runs: list[RunPart] = []
    for index, run_dir in enumerate(run_dirs):
        first = output_fields(runs[0].spec.task.output) if runs else None
        runs.append(read_run(run_dir, index, first))
    task_fields = output_fields(runs[0].spec.task.output)
    mapping = parse_fields(fields, task_fields)
    real_by_file = [(path, read_real(path, mapping, task_fields)) for path in real_files]
    real = [item for _, items in real_by_file for item in items]
    if not real:
        raise ConfigError("the --real files hold no records")
    prepare_out(out, force=force)
    with ExitStack() as stack:
        eligible = [
            item
            for part, embedder in zip(runs, _embedders(runs, stack), strict=True)
            for item in mark_near_duplicates(part, real, embedder)
        ]
    rng = random.Random(seed)
    allowed = synthetic_allowed(len(real), share)
    chosen = (
        eligible if allowed is None or allowed >= len(eligible) else rng.sample(eligible, allowed)
    )
    for index, part in enumerate(runs):
        part.kept = sum(item.run == index for item in chosen)
    records = real + chosen
    rng.shuffle(records)
    _write_jsonl(out / TRAIN, (_record(item, task_fields) for item in records))
    _write_jsonl(out / DROPPED, (d for part in runs for d in part.near_duplicates))
    composition = _composition(real_by_file, runs, chosen, eligible, max_share, seed, out)
    write_json_atomic(out / COMPOSITION, composition)
    files = [TRAIN, DROPPED, COMPOSITION]
    write_json_atomic(out / MANIFEST, {"command": "mix", "files": files})
    return composition


def _once(flag: str, paths: list[Path]) -> None:
    """A file or run given twice would count its records twice."""
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise ConfigError(f"{flag} {path} is given twice")
        seen.add(path.resolve())


def _record(item: Item, task_fields: dict[str, Any]) -> dict[str, Any]:
    """The output fields, then ``source`` and ``origin`` (``sample_``-prefixed if the task
    has fields of those names)."""
    record = dict(item.fields)
    for key, value in (("source", item.source), ("origin", item.origin)):
        record[f"sample_{key}" if key in task_fields else key] = value
    return record


def _write_jsonl(path: Path, rows: Any) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _composition(
    real_by_file: list[tuple[Path, list[Item]]],
    runs: list[RunPart],
    chosen: list[Item],
    eligible: list[Item],
    max_share: float,
    seed: int,
    out: Path,
) -> dict[str, Any]:
    real = sum(len(items) for _, items in real_by_file)
    total = real + len(chosen)
    return {
        "out": str(out / TRAIN),
        "total": total,
        "real": real,
        "synthetic": len(chosen),
        "synthetic_share": round(len(chosen) / total, 4),
        "max_synthetic_share": max_share,
        "dropped_near_duplicates": sum(len(p.near_duplicates) for p in runs),
        "left_out_by_cap": len(eligible) - len(chosen),
        "seed": seed,
        "real_files": [{"path": str(p), "records": len(items)} for p, items in real_by_file],
        "runs": [
            {
                "run": str(p.run_dir),
                "samples": len(p.items),
                "near_duplicates": len(p.near_duplicates),
                "kept": p.kept,
                "embedder": p.embedder,
                "threshold": p.spec.novelty.threshold,
            }
            for p in runs
        ],
    }


def render_composition(c: dict[str, Any]) -> str:
    """What ``personaloom mix`` prints: the counts, per file and per run."""
    lines = [
        f"mixed {c['total']} records into {c['out']}: {c['real']} real, {c['synthetic']} "
        f"synthetic (share {c['synthetic_share']:.1%}, cap {c['max_synthetic_share']:.1%})"
    ]
    lines += [f"  real       {f['path']}: {f['records']}" for f in c["real_files"]]
    for run in c["runs"]:
        lines.append(
            f"  synthetic  {run['run']}: {run['samples']} samples, {run['near_duplicates']} "
            f"near-duplicates of a real record dropped (similarity >= {run['threshold']}, "
            f"{run['embedder']}), {run['kept']} kept"
        )
    lines.append(f"  left out by the cap: {c['left_out_by_cap']}")
    lines.append(f"composition: {Path(c['out']).parent / COMPOSITION}")
    return "\n".join(lines) + "\n"


__all__ = ["check_share", "mix", "render_composition", "synthetic_allowed"]
