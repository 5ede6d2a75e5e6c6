"""Rows of tabular files, read in a stream: JSONL, CSV, Parquet, a folder saved by the
``datasets`` library, and plain text (one row per line).

Persona pools and avoid sets can be far bigger than a run needs (Persona Hub's files hold
millions of rows), so nothing here holds a whole file: rows come in chunks of at most
``CHUNK_ROWS``, and a row is decoded only when it is asked for, so that a sampler skips the
rows it does not draw without parsing them. Parquet files are read row group by row group
and ``datasets`` folders batch by batch, both with pyarrow (``personaloom[pools]``), and only
the columns asked for.

A row's number is its position among the file's records, from 0: the non-blank lines of JSONL
and text files, the data rows of a CSV file (after its header), the rows of a Parquet file or
a ``datasets`` folder (``load_from_disk(folder)[row]``).
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personaloom.errors import ConfigError

CHUNK_ROWS = 8192
HEAD_BYTES = 1 << 16  # what a validation reads of a text file: enough to tell, not the file
FORMATS = ("jsonl", "csv", "parquet", "datasets", "text")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # what `datasets`' to_json writes: JSON lines
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
}


class TableError(ConfigError):
    """A file that cannot be read as asked; the message names the file (and the row)."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of one file, from row ``start``; ``row(i)`` decodes the i-th."""

    start: int
    size: int
    row: Callable[[int], dict[str, Any]]


def table_format(path: Path, given: str | None = None) -> str:
    """The format named in the spec, else the one the extension (or a folder) implies."""
    if given:
        return given
    if path.is_dir():
        return "datasets"
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TableError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            f"set `format` to one of {', '.join(FORMATS)}"
        )
    return kind


def chunks(path: Path, fmt: str, columns: list[str]) -> Iterator[Chunk]:
    """The file's rows in chunks; Parquet and ``datasets`` rows hold ``columns`` only."""
    readers = {
        "jsonl": _jsonl,
        "csv": _csv,
        "parquet": _parquet,
        "datasets": _datasets,
        "text": _text,
    }
    return readers[fmt](path, columns)


def column_names(path: Path, fmt: str) -> list[str] | None:
    """The columns every row has (a header or a schema), or None for JSONL, whose rows each
    have their own keys. Reads no more than the header or the schema."""
    if fmt == "text":
        return ["text"]
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return next(csv.reader(handle), [])
    if fmt == "parquet":
        pa, pq = _pyarrow(path, "Parquet")
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as exc:
            raise TableError(f"{path}: not a readable Parquet file ({exc})") from None
    if fmt == "datasets":
        pa, _ = _pyarrow(path, "a `datasets` folder")
        names: list[str] = []
        for file in _arrow_files(path)[:1]:
            with pa.OSFile(str(file)) as source:
                names = list(_ipc_reader(pa, source, file).schema.names)
        return names
    return None


def head_problem(path: Path, fmt: str) -> str | None:
    """Why a file cannot be of format ``fmt``, from its first bytes; None if it may be.

    Only the head is read: a validation must stay quick on a file of many gigabytes, and the
    readers name any bad row they meet later."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if fmt == "parquet":
        return None if head[:4] == b"PAR1" else f"{path} is not a Parquet file"
    if b"\0" in head:
        return f"{path} is binary, expected UTF-8 text ({fmt})"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
    if fmt == "jsonl" and head.lstrip().startswith(b"["):
        return f"{path} holds a JSON array; expected JSON lines (one object per line)"
    return None


# -- line formats ------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[list[int], list[bytes]]]:
    """Non-blank lines, undecoded, with their line numbers, CHUNK_ROWS at a time."""
    numbers: list[int] = []
    lines: list[bytes] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                numbers.append(number)
                lines.append(line)
                if len(lines) == CHUNK_ROWS:
                    yield numbers, lines
                    numbers, lines = [], []
    if lines:
        yield numbers, lines


def _decoded(path: Path, number: int, line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}:{number}: not UTF-8 text ({exc.reason})") from None


def _json_row(path: Path, numbers: list[int], lines: list[bytes], i: int) -> dict[str, Any]:
    try:
        row = json.loads(_decoded(path, numbers[i], lines[i]))
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}:{numbers[i]}: invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise TableError(f"{path}:{numbers[i]}: not a JSON object")
    return row


def _text_row(path: Path, numbers: list[int], lines: list[bytes], i: int) -> dict[str, Any]:
    return {"text": _decoded(path, numbers[i], lines[i]).strip()}


def _jsonl(path: Path, columns: list[str]) -> Iterator[Chunk]:
    start = 0
    for numbers, lines in _lines(path):
        yield Chunk(start, len(lines), functools.partial(_json_row, path, numbers, lines))
        start += len(lines)


def _text(path: Path, columns: list[str]) -> Iterator[Chunk]:
    start = 0
    for numbers, lines in _lines(path):
        yield Chunk(start, len(lines), functools.partial(_text_row, path, numbers, lines))
        start += len(lines)


def _csv(path: Path, columns: list[str]) -> Iterator[Chunk]:
    start = 0
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            for row in reader:
                rows.append(row)
                if len(rows) == CHUNK_ROWS:
                    yield Chunk(start, len(rows), rows.__getitem__)
                    start, rows = start + len(rows), []
        except UnicodeDecodeError as exc:
            raise TableError(
                f"{path}: not UTF-8 text near row {start + len(rows)} ({exc.reason})"
            ) from None
        except csv.Error as exc:
            raise TableError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    if rows:
        yield Chunk(start, len(rows), rows.__getitem__)


# -- Arrow formats -----------------------------------------------------------------------------


def _pyarrow(path: Path, what: str) -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ModuleNotFoundError:
        raise TableError(
            f"{path}: reading {what} needs pyarrow: pip install 'personaloom[pools]'"
        ) from None
    return pyarrow, pyarrow.parquet


def _arrow_row(batch: Any, columns: list[str], i: int) -> dict[str, Any]:
    return {name: batch.column(name)[i].as_py() for name in columns}


def _missing(path: Path, names: list[str], columns: list[str]) -> None:
    absent = [c for c in columns if c not in names]
    if absent:
        raise TableError(f"{path}: no column {absent[0]!r} (columns: {', '.join(names)})")


def _parquet(path: Path, columns: list[str]) -> Iterator[Chunk]:
    pa, pq = _pyarrow(path, "Parquet")
    try:
        # A buffered stream, not the whole column chunk read ahead: a row group can hold a
        # million rows, and memory must not grow with it (docs/spec.md, persona pools).
        file = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        _missing(path, list(file.schema_arrow.names), columns)
        start = 0
        for batch in file.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            yield Chunk(start, batch.num_rows, functools.partial(_arrow_row, batch, columns))
            start += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"{path}: not a readable Parquet file ({exc})") from None


def _arrow_files(folder: Path) -> list[Path]:
    """The Arrow files of a folder written by ``Dataset.save_to_disk``, in row order."""
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise TableError(
            f"{folder} holds several splits ({', '.join(splits)}): point `path` at one of them, "
            f"e.g. {folder / (splits[0] if splits else 'train')}"
        )
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        files = [folder / entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise TableError(
            f"{folder} is not a folder saved by `datasets` (Dataset.save_to_disk): "
            "no readable state.json"
        ) from None
    for file in files:
        if not file.is_file():
            raise TableError(f"{folder}: state.json names {file.name}, which is missing")
    return files


def _ipc_reader(pa: Any, source: Any, file: Path) -> Any:
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowException as exc:
        raise TableError(f"{file}: not an Arrow file written by `datasets` ({exc})") from None


def _datasets(path: Path, columns: list[str]) -> Iterator[Chunk]:
    pa, _ = _pyarrow(path, "a `datasets` folder")
    start = 0
    for file in _arrow_files(path):
        # Read, not memory-mapped: a chunk may outlive the file it came from being open.
        with pa.OSFile(str(file)) as source:
            reader = _ipc_reader(pa, source, file)
            _missing(path, list(reader.schema.names), columns)
            try:
                for batch in reader:
                    yield Chunk(
                        start, batch.num_rows, functools.partial(_arrow_row, batch, columns)
                    )
                    start += batch.num_rows
            except pa.ArrowException as exc:
                raise TableError(f"{file}: damaged after row {start} ({exc})") from None
