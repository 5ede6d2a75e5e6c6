"""Persona pools: ready-made personas read from files, beside or instead of mined ones.

Users start from released pools (Persona Hub's, FinePersonas, Nemotron-Personas) as often as
from mining. A pool source is a file, a glob or a ``datasets`` folder with one persona per
row; ``sample: N`` draws N rows uniformly with the spec's seed, in one streamed pass holding
N rows (bottom-k sampling: every row gets a random key, the N smallest keys win, and a row
whose key cannot make the cut is never decoded). Columns can carry persona traits, so
coverage targets are set on them with no LLM labelling a persona.

The personas become pool rows of ``personas.jsonl`` when the graph first needs personas
(``graphs/personas.py``), deduplicated at ``personas.novelty_threshold`` like mined ones,
each naming its file and row.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personaloom.ids import short_id, stable_seed
from personaloom.spec import PoolSource, Spec, matching_paths, relative_name
from personaloom.tables import Chunk, TableError, chunks, column_names, head_problem, table_format

_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(-?\d+(?:\.\d+)?)\s*$")
_AT_LEAST = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*\+\s*$")


@dataclass
class PoolRead:
    """One pool source, read: its personas (in file and row order) and what was seen."""

    index: int
    path: str
    rows: int = 0  # rows streamed past, usable or not
    personas: list[dict[str, Any]] = field(default_factory=list)

    def event(self) -> dict[str, Any]:
        labelled: dict[str, int] = {}
        for persona in self.personas:
            for trait in persona.get("traits") or {}:
                labelled[trait] = labelled.get(trait, 0) + 1
        return {
            "source": self.index,
            "path": self.path,
            "rows": self.rows,
            "personas": len(self.personas),
            "labelled": labelled,
        }


def match_value(cell: Any, values: list[str]) -> str | None:
    """The trait value a pool cell stands for, or None.

    A cell matches a value written the same way (case and surrounding spaces aside: `Nurse`
    is `nurse`), or, when it is a number, a range value that holds it: `18-29` (both ends
    included) or `65+`. So an `age` column of integers fills `values: [18-29, 30-49, 50+]`.
    """
    if cell is None or isinstance(cell, dict | list):
        return None
    if isinstance(cell, bool):
        text = str(cell).lower()
    elif isinstance(cell, float) and cell.is_integer():
        text = str(int(cell))
    else:
        text = str(cell).strip()
    for value in values:
        if value.casefold() == text.casefold():
            return value
    try:
        number = float(text)
    except ValueError:
        return None
    for value in values:
        low, high = _bounds(value)
        if low <= number <= high:
            return value
    return None


def _bounds(value: str) -> tuple[float, float]:
    """The numbers a range value holds (an empty range for any other value)."""
    if m := _RANGE.match(value):
        return float(m.group(1)), float(m.group(2))
    if m := _AT_LEAST.match(value):
        return float(m.group(1)), math.inf
    return math.inf, -math.inf


def _columns(source: PoolSource) -> list[str]:
    return list(dict.fromkeys([source.field, *source.trait_columns().values()]))


def _files(spec: Spec, source: PoolSource) -> list[tuple[Path, str]]:
    return [(p, table_format(p, source.format)) for p in matching_paths(spec, source.path)]


def read_pool(spec: Spec, index: int) -> PoolRead:
    """The personas of ``spec.personas.pool[index]``: every usable row, or ``sample`` of them.

    Raises TableError naming the file (and row) when one cannot be read."""
    source = spec.personas.pool[index]
    columns = _columns(source)
    labels = source.trait_columns()
    result = PoolRead(index, source.path)
    files = _files(spec, source)
    order = {path: i for i, (path, _) in enumerate(files)}

    def persona(path: Path, row: int, data: dict[str, Any]) -> dict[str, Any] | None:
        text = data.get(source.field)
        if not isinstance(text, str) or not text.strip():
            return None  # not a usable persona: skipped
        name = relative_name(path, spec.base_dir)
        traits = {
            trait: value
            for trait, column in labels.items()
            if (value := match_value(data.get(column), spec.traits[trait].values))
        }
        return {
            "id": short_id("p", "pool", name, row),
            "persona": text.strip(),
            "depth": 0,
            "source_text_id": None,
            "relation": "pool",
            "parent_id": None,
            "pool": {"file": name, "row": row},
            **({"traits": traits} if traits else {}),
            "_order": (order[path], row),
        }

    def stream() -> Iterator[tuple[Path, Chunk]]:
        for path, fmt in files:
            for chunk in chunks(path, fmt, columns):
                result.rows += chunk.size
                yield path, chunk

    if source.sample is None:
        found = [
            p
            for path, chunk in stream()
            for i in range(chunk.size)
            if (p := persona(path, chunk.start + i, chunk.row(i)))
        ]
    else:
        seed = stable_seed(spec.seed, "pool", index)
        found = bottom_k(stream(), source.sample, seed, persona)
    found.sort(key=lambda p: p["_order"])
    for p in found:
        del p["_order"]
    result.personas = found
    return result


def bottom_k(
    rows: Iterator[tuple[Path, Chunk]],
    n: int,
    seed: int,
    make: Callable[[Path, int, dict[str, Any]], dict[str, Any] | None],
) -> list[dict[str, Any]]:
    """A uniform sample of ``n`` usable rows without replacement, in one pass with ``n`` rows
    held: the usable rows with the ``n`` smallest random keys. Keys are drawn per row in
    stream order from one seeded generator, so the sample does not depend on how the rows
    were chunked; a row whose key is above the current n-th smallest is skipped undecoded."""
    rng = np.random.default_rng(seed)
    heap: list[tuple[float, int, dict[str, Any]]] = []  # (-key, tie-break, item): a max-heap
    made = 0
    for path, chunk in rows:
        keys = rng.random(chunk.size)
        cut = -heap[0][0] if len(heap) == n else 1.0
        for i in np.flatnonzero(keys < cut):
            key = float(keys[i])
            if len(heap) == n and key >= -heap[0][0]:
                continue
            item = make(path, chunk.start + int(i), chunk.row(int(i)))
            if item is None:
                continue
            made += 1
            if len(heap) < n:
                heapq.heappush(heap, (-key, made, item))
            else:
                heapq.heapreplace(heap, (-key, made, item))
    return [item for _, _, item in heap]


def load_pool(spec: Spec) -> list[PoolRead]:
    """Every pool source read, in spec order (raises TableError naming the source)."""
    reads = []
    for i in range(len(spec.personas.pool)):
        try:
            reads.append(read_pool(spec, i))
        except TableError as exc:
            raise TableError(f"personas.pool[{i}]: {exc}") from None
    return reads


def check_pool(spec: Spec) -> list[tuple[str, str]]:
    """Problems with the pool files, found before any LLM call: a missing file, format or
    column, a file that is binary or not UTF-8 (from its head), and a file with no usable
    persona (read only until the first one)."""
    problems: list[tuple[str, str]] = []
    for i, source in enumerate(spec.personas.pool):
        where = f"personas.pool[{i}]"
        paths = matching_paths(spec, source.path)
        if not paths:
            problems.append(
                (f"{where}.path", f"no file matches {source.path!r} (relative to the spec)")
            )
        for path in paths:
            try:
                problem = _file_problem(path, table_format(path, source.format), source, where)
            except TableError as exc:
                problem = (f"{where}.path", str(exc))
            if problem:
                problems.append(problem)
    return problems


def _file_problem(path: Path, fmt: str, source: PoolSource, where: str) -> tuple[str, str] | None:
    if path.is_dir() != (fmt == "datasets"):
        kind = "a folder" if path.is_dir() else "a file"
        return f"{where}.path", f"{path} is {kind}; format {fmt} expects the other"
    if fmt != "datasets" and (problem := head_problem(path, fmt)):
        return f"{where}.path", problem
    names = column_names(path, fmt)
    if names is not None:
        if source.field not in names:
            return (
                f"{where}.field",
                f"{path}: no column {source.field!r} (columns: {', '.join(names)})",
            )
        for trait, column in source.trait_columns().items():
            if column not in names:
                return (
                    f"{where}.traits.{trait}",
                    f"{path}: no column {column!r} (columns: {', '.join(names)})",
                )
    first = _first_usable(path, fmt, source)
    if first is None:
        return (
            f"{where}.field",
            f"{path}: no usable persona (no row has a non-empty string in {source.field!r})",
        )
    if names is None:  # JSONL: each row has its own keys; the first usable one must have them
        for trait, column in source.trait_columns().items():
            if column not in first:
                return (
                    f"{where}.traits.{trait}",
                    f"{path}: the first usable row has no field {column!r} "
                    f"(its fields: {', '.join(first)})",
                )
    return None


def _first_usable(path: Path, fmt: str, source: PoolSource) -> dict[str, Any] | None:
    for chunk in chunks(path, fmt, _columns(source)):
        for i in range(chunk.size):
            row = chunk.row(i)
            text = row.get(source.field)
            if isinstance(text, str) and text.strip():
                return row
    return None
