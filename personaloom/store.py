"""The run directory's JSONL files and the counts derived from them.

``dataset.jsonl`` is the source of truth: coverage counts, persona usage and vocabulary usage
are rebuilt from it whenever a run opens, so a resumed run cannot drift from what it wrote.
Appends are idempotent by id (a resumed LangGraph node runs again from its start), flushed
and fsynced; a line torn by a kill is cut off when the file is opened again.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from personaloom.errors import ConfigError
from personaloom.spec import Spec, load_yaml, parse_spec

# The run directory's files (docs/run-directory.md).
DATASET = "dataset.jsonl"
REJECTED = "rejected.jsonl"
PERSONAS = "personas.jsonl"
REJECTED_PERSONAS = "rejected_personas.jsonl"
RUN_JSON = "run.json"
SPEC_YAML = "spec.yaml"
TRACES = "traces.sqlite"
CHECKPOINTS = "checkpoints.sqlite"
CHROMA = "chroma"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
COVERAGE_PNG = "coverage.png"
BASELINE = "baseline.jsonl"  # `personaloom report --baseline N`
BASELINE_TRACES = "baseline-traces.sqlite"
LOCAL_MODEL_LOG = "local-model.log"  # the embedded model's log, when a run started it
CHROMA_SERVER_LOG = "chroma-server.log"  # `chroma run`'s log, when a run started one


class StoreError(Exception):
    """A run file that is damaged somewhere other than a torn last line."""


def read_jsonl(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSONL file.

    A last line without its newline (a write cut short by a kill) is ignored, and with
    ``repair`` cut off the file. A bad line anywhere else is not a torn write: it raises
    StoreError naming the line rather than dropping what follows it.
    """
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    good_end = 0
    with path.open("rb") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, 1):
        last = number == len(lines)
        try:
            if not line.endswith(b"\n"):
                raise ValueError("torn")
            rows.append(json.loads(line))
        except ValueError:
            if last:
                break
            raise StoreError(f"{path}:{number}: not a JSON line; fix or remove it") from None
        good_end += len(line)
    if repair and good_end != path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good_end)
    return rows


class _JsonlLog:
    """An append-only JSONL file with an id index."""

    def __init__(self, path: Path, *, repair: bool = True):
        self.path = path
        self.rows = read_jsonl(path, repair=repair)
        self.ids = {row["id"] for row in self.rows}

    def append(self, row: dict[str, Any]) -> bool:
        """Append unless a row with this id is already there; True if written."""
        if row["id"] in self.ids:
            return False
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.ids.add(row["id"])
        self.rows.append(row)
        return True


class RunStore:
    """Accepted samples, rejected drafts, the persona pool and the personas kept out of it."""

    def __init__(self, run_dir: Path, *, readonly: bool = False):
        """``readonly`` for readers of a run another process may be writing: no repair."""
        self.run_dir = run_dir
        if not readonly:
            run_dir.mkdir(parents=True, exist_ok=True)
        self.dataset = _JsonlLog(run_dir / DATASET, repair=not readonly)
        self.rejected = _JsonlLog(run_dir / REJECTED, repair=not readonly)
        self.personas = _JsonlLog(run_dir / PERSONAS, repair=not readonly)
        self.persona_by_id = {p["id"]: p for p in self.personas.rows}
        self.rejected_personas = _JsonlLog(run_dir / REJECTED_PERSONAS, repair=not readonly)
        if not readonly:
            self._restore_personas()
        self.coverage: Counter[tuple[str, str]] = Counter()
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.persona_uses: Counter[str] = Counter()  # drafts per persona, accepted or not
        self.word_uses: Counter[tuple[str, str]] = Counter()
        self.reasons: Counter[str] = Counter(r["reason"] for r in self.rejected.rows)
        for sample in self.dataset.rows:
            self._count_sample(sample)
        for rejection in self.rejected.rows:
            self._count_attempt(rejection)

    def _restore_personas(self) -> None:
        """Put back personas that accepted samples name but personas.jsonl lost (its torn
        last line was cut off): each sample carries its persona's text and lineage."""
        for sample in self.dataset.rows:
            persona = sample.get("persona") or {}
            if not persona.get("id") or persona["id"] in self.persona_by_id:
                continue
            lineage = sample.get("lineage") or {}
            chain = lineage.get("persona_ids") or [persona["id"]]
            self.add_persona(
                {
                    "id": persona["id"],
                    "persona": persona.get("text", ""),
                    "depth": len(chain) - 1,
                    "source_text_id": lineage.get("source_text_id"),
                    "relation": lineage.get("relation"),
                    "parent_id": chain[1] if len(chain) > 1 else None,
                    **(
                        {"pool": lineage["pool"]} if lineage.get("pool") and len(chain) == 1 else {}
                    ),
                    "traits": dict(sample.get("traits") or {}),
                    "restored_from": DATASET,
                }
            )

    @property
    def accepted(self) -> int:
        return len(self.dataset.rows)

    def _count_attempt(self, row: dict[str, Any]) -> None:
        for trait, value in row.get("traits", {}).items():
            self.attempts[(trait, value)] += 1
        persona = row.get("persona_id") or row.get("persona", {}).get("id")
        if persona:
            self.persona_uses[persona] += 1

    def _count_sample(self, sample: dict[str, Any]) -> None:
        for trait, value in sample["traits"].items():
            self.coverage[(trait, value)] += 1
        self._count_attempt(sample)
        for part, word in sample.get("words", {}).items():
            self.word_uses[(part, word)] += 1

    def add_sample(self, sample: dict[str, Any]) -> bool:
        if not self.dataset.append(sample):
            return False
        self._count_sample(sample)
        return True

    def add_rejection(self, rejection: dict[str, Any]) -> bool:
        if not self.rejected.append(rejection):
            return False
        self.reasons[rejection["reason"]] += 1
        self._count_attempt(rejection)
        return True

    def written(self, draft_id: str) -> bool:
        """Whether the draft's outcome is in dataset.jsonl or rejected.jsonl."""
        return draft_id in self.dataset.ids or draft_id in self.rejected.ids

    def add_persona(self, persona: dict[str, Any]) -> bool:
        if not self.personas.append(persona):
            return False
        self.persona_by_id[persona["id"]] = persona
        return True

    def reject_persona(self, row: dict[str, Any]) -> bool:
        """Record a persona the gate or the novelty check kept out of the pool."""
        return self.rejected_personas.append(row)

    def persona_seen(self, persona_id: str) -> bool:
        """Whether a candidate persona was already admitted or turned away (a re-run node)."""
        return persona_id in self.persona_by_id or persona_id in self.rejected_personas.ids

    def lineage(self, persona_id: str) -> list[str]:
        """Persona ids from this one up to the persona mined from a text."""
        chain = []
        current: str | None = persona_id
        while current is not None and current in self.persona_by_id and current not in chain:
            chain.append(current)
            current = self.persona_by_id[current].get("parent_id")
        return chain

    def source_text_id(self, persona_id: str) -> str | None:
        chain = self.lineage(persona_id)
        return self.persona_by_id[chain[-1]].get("source_text_id") if chain else None

    def pool_row(self, persona_id: str) -> dict[str, Any] | None:
        """``{"file", "row"}`` of the pool row at the root of the persona's chain, if any."""
        chain = self.lineage(persona_id)
        return self.persona_by_id[chain[-1]].get("pool") if chain else None

    def origin(self, persona_id: str) -> str | None:
        """Where the persona's chain starts: a corpus text or a pool row (``persona_origin``)."""
        chain = self.lineage(persona_id)
        return persona_origin(self.persona_by_id[chain[-1]]) if chain else None


def persona_origin(persona: dict[str, Any]) -> str | None:
    """Where a persona at the root of a chain came from: its corpus text id, or
    ``FILE#ROW`` for a pool row."""
    pool = persona.get("pool")
    if pool:
        return f"{pool['file']}#{pool['row']}"
    return persona.get("source_text_id")


def load_run(run_dir: Path) -> tuple[Spec, dict[str, Any]]:
    """A run directory's frozen spec (paths resolved as when it started) and ``run.json``."""
    meta_path = run_dir / RUN_JSON
    if not meta_path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no {RUN_JSON})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("spec_dir"), str):
            raise ValueError("expected an object with spec_dir")
    except (ValueError, OSError) as exc:
        raise ConfigError(
            f"{meta_path} is damaged ({exc}); restore it (it holds the run's name, spec_dir, "
            "created, elapsed_seconds and status) or start a new run"
        ) from None
    spec_path = run_dir / SPEC_YAML
    try:
        data = load_yaml(spec_path.read_text(encoding="utf-8"), str(spec_path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{spec_path} (the run's frozen spec) cannot be read ({exc}); restore it, "
            "or start a new run"
        ) from None
    spec = parse_spec(data, source=str(spec_path), base_dir=Path(meta["spec_dir"]))
    return spec, meta


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
