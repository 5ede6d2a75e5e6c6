"""Lazy access to a spec's seed corpus: texts are read only when personas are mined from them.

A corpus can hold thousands of texts while a run needs a few dozen; listing files and
indexing JSONL line offsets is cheap, reading and sending the texts is not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from personaloom.spec import Spec, corpus_files, relative_name

MAX_TEXT_CHARS = 3000  # longer texts are cut: a persona needs the gist, not the whole book


@dataclass(frozen=True)
class _Ref:
    text_id: str
    path: Path
    offset: int | None = None  # JSONL line start; None for a whole file
    field: str = "text"


class Corpus:
    def __init__(self, spec: Spec):
        self._refs: list[_Ref] = []
        for index, source in enumerate(spec.corpus):
            for path in corpus_files(spec, index):
                name = relative_name(path, spec.base_dir)
                if source.jsonl is None:
                    self._refs.append(_Ref(name, path))
                    continue
                offset = 0
                with path.open("rb") as handle:
                    for number, line in enumerate(handle, 1):
                        if line.strip():
                            self._refs.append(_Ref(f"{name}:{number}", path, offset, source.field))
                        offset += len(line)

    def __len__(self) -> int:
        return len(self._refs)

    def long_texts(self) -> int:
        """How many texts are longer than MAX_TEXT_CHARS (and so are cut); reads them all."""
        count = 0
        for index, ref in enumerate(self._refs):
            if ref.offset is None and ref.path.stat().st_size <= MAX_TEXT_CHARS:
                continue  # bytes >= characters: too short to be cut, without reading it
            count += len(self._raw(index).strip()) > MAX_TEXT_CHARS
        return count

    def _raw(self, index: int) -> str:
        ref = self._refs[index]
        if ref.offset is None:
            return ref.path.read_text(encoding="utf-8")
        with ref.path.open("rb") as handle:
            handle.seek(ref.offset)
            return json.loads(handle.readline())[ref.field]

    def text(self, index: int) -> tuple[str, str]:
        """``(text_id, text)`` of the index-th text."""
        return self._refs[index].text_id, self._raw(index).strip()[:MAX_TEXT_CHARS]
