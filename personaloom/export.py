"""``personaloom export``: a run's accepted samples as Parquet shards, a ``datasets`` folder,
JSONL, or chat fine-tuning JSONL, each with a dataset card (``personaloom.card``).

The run is read through its readers (``load_run``, ``RunStore``, ``report.rebuild``, the trace
store's ``run_started`` events) and nothing is written into it. What an export holds comes
from dataset.jsonl, the frozen spec, the report and those events, none of which ever holds an
API key (docs/run-directory.md).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from personaloom.errors import ConfigError
from personaloom.runlock import effective_status
from personaloom.spec import Spec, output_fields
from personaloom.store import COVERAGE_PNG, RUN_JSON, TRACES, RunStore, load_run, write_json_atomic
from personaloom.traces import TraceStore

FORMATS = ("parquet", "hf", "jsonl", "chat")
MANIFEST = "personaloom-export.json"  # what an export wrote, so --force can replace exactly it
CHAT_ROLES = ("system", "user", "assistant")
SHARD_ROWS = 50_000
EXTRA_HINT = "pip install 'personaloom[export]'"

# The record's own columns, beside the task's output fields (docs/export.md#columns).
META_COLUMNS = {
    "id": "the sample id in the run's dataset.jsonl",
    "persona": "the description of the persona that wrote the sample",
    "persona_id": "that persona's id in the run's personas.jsonl",
    "traits": "the value of every trait (assigned by the planner, or the persona's label)",
    "words": "the vocabulary word the sample had to use, per list",
    "critic": "score (1-5) and feedback of the critic's last review",
    "novelty": "the nearest sample accepted before it and its cosine similarity",
    "lineage": "persona chain (writer first), source text, relation, revisions, planner round",
}


@dataclass(frozen=True)
class Run:
    """What an export reads from a run directory."""

    run_dir: Path
    spec: Spec
    meta: dict[str, Any]
    status: str
    samples: list[dict[str, Any]]
    report: dict[str, Any]
    models: dict[str, list[str]]  # role -> the models it was given in the run's sessions


@dataclass(frozen=True)
class Export:
    out: Path
    files: list[str]  # relative to out
    rows: int


def read_samples(run_dir: Path) -> tuple[Spec, dict[str, Any], str, list[dict[str, Any]]]:
    """A stopped run's frozen spec, run.json, status and accepted samples (which may be
    none), or a ConfigError naming why the run cannot be read."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    spec, meta = load_run(run_dir)  # ConfigError when run.json is missing or damaged
    status = effective_status(run_dir, meta)
    if status == "running":
        raise ConfigError(f"{run_dir} is still running; use it once it has stopped")
    return spec, meta, status, RunStore(run_dir, readonly=True).dataset.rows


def open_run(run_dir: Path) -> Run:
    """The run, or a ConfigError naming why it cannot be exported."""
    spec, meta, status, samples = read_samples(run_dir)
    if not samples:
        raise ConfigError(f"{run_dir} has no accepted samples (dataset.jsonl is empty)")
    from personaloom.report import rebuild

    return Run(run_dir, spec, meta, status, samples, rebuild(run_dir), _models(run_dir))


def _models(run_dir: Path) -> dict[str, list[str]]:
    """Per role, the model names (with their endpoint) of every session of the run."""
    if not (run_dir / TRACES).exists():
        return {}
    traces = TraceStore(run_dir / TRACES, readonly=True)
    try:
        sessions = traces.events(kind="run_started")
    finally:
        traces.close()
    models: dict[str, list[str]] = {}
    for event in sessions:
        for role, endpoint in (event["data"].get("models") or {}).items():
            name = endpoint.get("model") or "?"
            if endpoint.get("base_url"):
                name += f" at {endpoint['base_url']}"
            if name not in models.setdefault(role, []):
                models[role].append(name)
    return models


# -- columns --------------------------------------------------------------------------------


def column_names(spec: Spec) -> dict[str, str]:
    """Record field -> column name: ``id``, the output fields under their own names, then
    the metadata; a metadata column whose name an output field has is ``sample_<name>``."""
    fields = output_fields(spec.task.output)
    empty = {"traits": not spec.traits, "words": not spec.vocabulary}  # Parquet needs fields
    meta = [m for m in META_COLUMNS if m != "id" and not empty.get(m)]

    def column(name: str) -> str:
        return f"sample_{name}" if name in fields else name

    return {
        "meta:id": column("id"),
        **{name: name for name in fields},
        **{f"meta:{name}": column(name) for name in meta},
    }


def flat_record(spec: Spec, sample: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """One row: the output fields as columns, then persona, traits, critic, lineage."""
    persona = sample.get("persona") or {}
    critic = sample.get("critic") or {}
    novelty = sample.get("novelty") or {}
    lineage = sample.get("lineage") or {}
    meta = {
        "id": sample["id"],
        "persona": persona.get("text"),
        "persona_id": persona.get("id"),
        "traits": {t: (sample.get("traits") or {}).get(t) for t in spec.traits},
        "words": {p: (sample.get("words") or {}).get(p) for p in spec.vocabulary},
        "critic": {"score": critic.get("score"), "feedback": critic.get("feedback")},
        "novelty": {
            "neighbour_id": novelty.get("neighbour_id"),
            "similarity": novelty.get("similarity"),
        },
        "lineage": {
            "persona_ids": list(lineage.get("persona_ids") or []),
            "source_text_id": lineage.get("source_text_id"),
            "relation": lineage.get("relation"),
            "revisions": lineage.get("revisions"),
            "round": lineage.get("round"),
        },
    }
    output = sample.get("output") or {}
    row = {}
    for key, column in names.items():
        row[column] = meta[key[5:]] if key.startswith("meta:") else output.get(key)
    return row


def arrow_schema(spec: Spec, names: dict[str, str]) -> Any:
    """The Parquet / Arrow schema, from the spec rather than inferred from the rows (so a
    column that happens to be all null still has its type)."""
    import pyarrow as pa

    simple = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    meta = {
        "id": pa.string(),
        "persona": pa.string(),
        "persona_id": pa.string(),
        "traits": pa.struct([(name, pa.string()) for name in spec.traits]),
        "words": pa.struct([(part, pa.string()) for part in spec.vocabulary]),
        "critic": pa.struct([("score", pa.int64()), ("feedback", pa.string())]),
        "novelty": pa.struct([("neighbour_id", pa.string()), ("similarity", pa.float64())]),
        "lineage": pa.struct(
            [
                ("persona_ids", pa.list_(pa.string())),
                ("source_text_id", pa.string()),
                ("relation", pa.string()),
                ("revisions", pa.int64()),
                ("round", pa.int64()),
            ]
        ),
    }
    fields = output_fields(spec.task.output)
    columns = []
    for key, column in names.items():
        if key.startswith("meta:"):
            columns.append((column, meta[key[5:]]))
        else:
            kind = fields[key]
            columns.append((column, simple.get(kind, pa.list_(pa.string()))))
    return pa.schema(columns)


# -- chat -----------------------------------------------------------------------------------


def parse_chat(text: str, spec: Spec) -> list[tuple[str, str]]:
    """``user=question,assistant=answer`` -> [(role, output field)], in message order."""
    fields = output_fields(spec.task.output)
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        role, sep, field = (s.strip() for s in part.partition("="))
        if not sep or not role or not field:
            raise ConfigError(f"--chat {text!r}: give ROLE=FIELD pairs, e.g. user=title")
        if role not in CHAT_ROLES:
            raise ConfigError(f"--chat: role {role!r} is not one of {list(CHAT_ROLES)}")
        if field not in fields:
            raise ConfigError(
                f"--chat: {field!r} is not an output field of the run's task "
                f"(task.output has {list(fields)})"
            )
        pairs.append((role, field))
    roles = {role for role, _ in pairs}
    if not {"user", "assistant"} <= roles:
        raise ConfigError("--chat needs a user and an assistant message, e.g. user=a,assistant=b")
    return pairs


def chat_record(sample: dict[str, Any], pairs: list[tuple[str, str]], system: str | None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    output = sample.get("output") or {}
    for role, field in pairs:
        value = output.get(field)
        if isinstance(value, list):
            content = "\n".join(str(v) for v in value)
        else:
            content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        messages.append({"role": role, "content": content})
    return {"messages": messages}


# -- writing --------------------------------------------------------------------------------


def prepare_out(out: Path, *, force: bool, run_dir: Path | None = None) -> None:
    """An empty (or new) folder to write into. A non-empty one is refused unless ``force``;
    with it, the files a previous export listed in its manifest are removed, and nothing
    else (a stale shard would otherwise be read with the new ones)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if (out / RUN_JSON).exists() or (run_dir and out.resolve() == run_dir.resolve()):
        raise ConfigError(f"--out {out} is a run directory; export into a folder of its own")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"--out {out} is not empty; choose another folder or add --force")
        _remove_previous(out)
    out.mkdir(parents=True, exist_ok=True)


def _remove_previous(out: Path) -> None:
    manifest = out / MANIFEST
    if not manifest.exists():
        return
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (ValueError, OSError, AttributeError):
        raise ConfigError(f"{manifest} is damaged; remove the old export by hand") from None
    for name in [*files, MANIFEST]:
        path = (out / name).resolve()
        if out.resolve() in path.parents and path.is_file():
            path.unlink()
    for folder in sorted({(out / n).parent for n in files}, key=lambda p: -len(p.parts)):
        if folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ModuleNotFoundError:
        raise ConfigError(f"Parquet and `datasets` exports need pyarrow: {EXTRA_HINT}") from None
    return pyarrow


def write_parquet(rows: list[dict], schema: Any, out: Path, shard_rows: int) -> list[str]:
    """Shards named as the Hugging Face Hub names them: data/train-00000-of-00002.parquet."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    count = max(1, -(-len(rows) // shard_rows))
    (out / "data").mkdir(exist_ok=True)
    files = []
    for i in range(count):
        name = f"data/train-{i:05d}-of-{count:05d}.parquet"
        chunk = rows[i * shard_rows : (i + 1) * shard_rows]
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), out / name)
        files.append(name)
    return files


def write_hf(rows: list[dict], schema: Any, out: Path) -> list[str]:
    """A DatasetDict with one ``train`` split, as ``datasets.load_from_disk`` reads it."""
    pa = _pyarrow()
    try:
        import datasets
    except ModuleNotFoundError:
        raise ConfigError(f"the hf format needs the datasets library: {EXTRA_HINT}") from None
    datasets.disable_progress_bars()
    table = pa.Table.from_pylist(rows, schema=schema)
    datasets.DatasetDict({"train": datasets.Dataset(table)}).save_to_disk(str(out))
    split = sorted(str(p.relative_to(out)) for p in (out / "train").iterdir() if p.is_file())
    return ["dataset_dict.json", *split]


def write_jsonl(rows: Iterable[dict], out: Path) -> list[str]:
    name = "data/train.jsonl"
    (out / "data").mkdir(exist_ok=True)
    with (out / name).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return [name]


def data_files(fmt: str) -> str:
    """The glob of the data files, for the card's ``configs`` (what the Hub loads)."""
    return {
        "parquet": "data/train-*.parquet",
        "hf": "train/data-*.arrow",
        "jsonl": "data/train.jsonl",
        "chat": "data/train.jsonl",
    }[fmt]


def export(
    run_dir: Path,
    fmt: str,
    out: Path,
    *,
    force: bool = False,
    chat: str | None = None,
    system: str | None = None,
    license: str = "unknown",
    task_categories: list[str] | None = None,
    shard_rows: int = SHARD_ROWS,
) -> Export:
    """Write the export and its card into ``out``; every problem is checked before writing."""
    from personaloom.card import render_card

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {list(FORMATS)}")
    if shard_rows < 1:
        raise ConfigError("--shard-rows must be at least 1")
    if fmt == "chat" and chat is None:
        raise ConfigError(
            "--format chat needs --chat ROLE=FIELD,..., e.g. user=title,assistant=story"
        )
    if fmt != "chat" and (chat is not None or system is not None):
        raise ConfigError("--chat and --system are for --format chat only")
    if fmt in ("parquet", "hf"):
        _pyarrow()
    run = open_run(run_dir)
    pairs = parse_chat(chat, run.spec) if chat is not None else None
    prepare_out(out, force=force, run_dir=run_dir)
    names = column_names(run.spec)
    if pairs is not None:
        files = write_jsonl((chat_record(s, pairs, system) for s in run.samples), out)
    else:
        rows = [flat_record(run.spec, s, names) for s in run.samples]
        if fmt == "jsonl":
            files = write_jsonl(rows, out)
        elif fmt == "parquet":
            files = write_parquet(rows, arrow_schema(run.spec, names), out, shard_rows)
        else:
            files = write_hf(rows, arrow_schema(run.spec, names), out)
    chart = (run.run_dir / COVERAGE_PNG).exists()
    if chart:  # the card shows it, as report.md does
        shutil.copyfile(run.run_dir / COVERAGE_PNG, out / COVERAGE_PNG)
        files.append(COVERAGE_PNG)
    card = render_card(
        run,
        fmt=fmt,
        data_files=data_files(fmt),
        columns=None if pairs is not None else names,
        chat=pairs,
        system=system,
        chart=chart,
        license=license,
        task_categories=task_categories or ["text-generation"],
    )
    (out / "README.md").write_text(card, encoding="utf-8")
    files.append("README.md")
    manifest = {
        "run_dir": str(run.run_dir.resolve()),
        "format": fmt,
        "rows": len(run.samples),
        "files": files,
        "exported": datetime.now().isoformat(timespec="seconds"),
    }
    write_json_atomic(out / MANIFEST, manifest)  # last: what --force removes next time
    return Export(out=out, files=files, rows=len(run.samples))


__all__ = [
    "FORMATS",
    "Export",
    "Run",
    "export",
    "open_run",
    "prepare_out",
    "read_samples",
]
