"""Avoid sets: eval or test items that accepted samples must not resemble (``novelty.avoid``).

Decontamination while generating rather than after: a draft that shares a run of
``novelty.ngram`` words (13 by default, as GPT-3's decontamination did) with an item, or whose
embedding is at or above the novelty threshold to one, is sent back to the writer or rejected
as ``contaminated`` (``agents/novelty.py``). This module reads the items and answers the word
check; the embeddings live in the run's ``avoid`` Chroma collection, apart from the samples'.

Words are compared as GPT-3 did: lowercased, punctuation dropped. An item shorter than
``ngram`` words matches when all of it appears in a draft, if it has at least
``SHORT_ITEM_WORDS`` words; shorter items (a one-line question, a label) are checked by
similarity only, since a whole short phrase would reject ordinary sentences.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from personaloom.spec import AvoidSource, Spec, matching_paths, relative_name
from personaloom.tables import TableError, chunks, column_names, head_problem, table_format

SHORT_ITEM_WORDS = 8
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lowercased words, punctuation dropped: what the n-gram check compares."""
    return [word.casefold() for word in _WORD.findall(text)]


@dataclass(frozen=True)
class AvoidItem:
    """One item to stay away from; ``id`` is ``file#row``."""

    id: str
    texts: tuple[str, ...]  # one per field

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@dataclass(frozen=True)
class Overlap:
    """A draft's run of words that an avoided item has too, as the draft wrote it."""

    item: AvoidItem
    phrase: str


class AvoidSet:
    """The items of a spec's ``novelty.avoid`` and an index of their word n-grams.

    N-grams are kept as a sorted array of 64-bit hashes with the item each came from: 16 bytes
    per n-gram (a 10,000-item eval set of 100-word items takes about 15 MB), looked up by
    binary search."""

    def __init__(self, items: list[AvoidItem], ngram: int | None):
        self.items = items
        self.ngram = ngram
        hashes: list[int] = []
        owners: list[int] = []
        sizes: set[int] = set()
        for index, item in enumerate(items):
            for text in item.texts:
                for size, gram in _grams(words(text), ngram):
                    hashes.append(hash(gram))
                    owners.append(index)
                    sizes.add(size)
        found = np.asarray(hashes, dtype=np.int64)
        self._hashes, first = np.unique(found, return_index=True)
        self._owners = np.asarray(owners, dtype=np.int64)[first]
        self._sizes = sorted(sizes)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ngrams(self) -> int:
        return len(self._hashes)

    def overlap(self, texts: list[str]) -> Overlap | None:
        """The first run of words in ``texts`` (each a field of a draft) that an item has."""
        if not len(self._hashes):
            return None
        for text in texts:
            spans = [m.span() for m in _WORD.finditer(text)]
            tokens = [text[a:b].casefold() for a, b in spans]
            for size in self._sizes:
                grams = [tuple(tokens[j : j + size]) for j in range(len(tokens) - size + 1)]
                if not grams:
                    continue
                query = np.asarray([hash((size, *g)) for g in grams], dtype=np.int64)
                at = np.minimum(np.searchsorted(self._hashes, query), len(self._hashes) - 1)
                hits = np.flatnonzero(self._hashes[at] == query)
                if len(hits):
                    j = int(hits[0])
                    item = self.items[int(self._owners[at[j]])]
                    return Overlap(item, text[spans[j][0] : spans[j + size - 1][1]])
        return None


def _grams(tokens: list[str], ngram: int | None) -> Iterator[tuple[int, tuple]]:
    """``(size, (size, *words))`` of every n-gram of an item, the size keyed into the hash."""
    if ngram is None:
        return
    size = min(ngram, len(tokens))
    if size < min(ngram, SHORT_ITEM_WORDS):
        return
    for j in range(len(tokens) - size + 1):
        yield size, (size, *tokens[j : j + size])


def _files(spec: Spec, source: AvoidSource) -> list[tuple[Path, str]]:
    return [(p, table_format(p, source.format)) for p in matching_paths(spec, source.path)]


def _item_texts(row: dict[str, Any], fields: list[str]) -> tuple[str, ...]:
    return tuple(
        str(row[f]).strip() for f in fields if row.get(f) is not None and str(row[f]).strip()
    )


def read_items(spec: Spec, index: int) -> list[AvoidItem]:
    """Every item of ``spec.novelty.avoid[index]``; rows without text are skipped."""
    source = spec.novelty.avoid[index]
    items = []
    for path, fmt in _files(spec, source):
        fields = ["text"] if fmt == "text" else source.fields()
        name = relative_name(path, spec.base_dir)
        for chunk in chunks(path, fmt, fields):
            for i in range(chunk.size):
                if texts := _item_texts(chunk.row(i), fields):
                    items.append(AvoidItem(f"{name}#{chunk.start + i}", texts))
    return items


def load_avoid(spec: Spec) -> AvoidSet | None:
    """The spec's avoid set, or None without ``novelty.avoid`` (raises TableError)."""
    if not spec.novelty.avoid:
        return None
    items: dict[str, AvoidItem] = {}
    for index in range(len(spec.novelty.avoid)):
        try:
            items.update((item.id, item) for item in read_items(spec, index))
        except TableError as exc:
            raise TableError(f"novelty.avoid[{index}]: {exc}") from None
    return AvoidSet(list(items.values()), spec.novelty.ngram)


def check_avoid(spec: Spec) -> list[tuple[str, str]]:
    """Problems with the avoid files: missing, of no known format, binary or not UTF-8 (from
    the head), a field that is not a column, a file with no item."""
    problems: list[tuple[str, str]] = []
    for i, source in enumerate(spec.novelty.avoid):
        where = f"novelty.avoid[{i}]"
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


def _file_problem(path: Path, fmt: str, source: AvoidSource, where: str) -> tuple[str, str] | None:
    if path.is_dir() != (fmt == "datasets"):
        kind = "a folder" if path.is_dir() else "a file"
        return f"{where}.path", f"{path} is {kind}; format {fmt} expects the other"
    if fmt == "text" and source.field is not None:
        return f"{where}.field", f"{path} is plain text, one item per line: it has no fields"
    if fmt != "datasets" and (problem := head_problem(path, fmt)):
        return f"{where}.path", problem
    fields = ["text"] if fmt == "text" else source.fields()
    names = column_names(path, fmt)
    if names is not None:
        absent = [f for f in fields if f not in names]
        if absent:
            return (
                f"{where}.field",
                f"{path}: no column {absent[0]!r} (columns: {', '.join(names)})",
            )
    for chunk in chunks(path, fmt, fields):
        if any(_item_texts(chunk.row(i), fields) for i in range(chunk.size)):
            return None
    shown = ", ".join(repr(f) for f in fields)
    return f"{where}.field", f"{path}: no item (no row has text in {shown})"
