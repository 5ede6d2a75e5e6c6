"""Lazy access to a spec's seed corpus: texts are read only when personas are mined from them.

A corpus can hold thousands of texts while a run needs a few dozen; listing files and
indexing JSONL line offsets is cheap, reading and sending the texts is not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from personaloom.spec import Spec, corpus_files

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
                name = _relative(path, spec.base_dir)
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

    def text(self, index: int) -> tuple[str, str]:
        """``(text_id, text)`` of the index-th text."""
        ref = self._refs[index]
        if ref.offset is None:
            text = ref.path.read_text(encoding="utf-8")
        else:
            with ref.path.open("rb") as handle:
                handle.seek(ref.offset)
                text = json.loads(handle.readline())[ref.field]
        return ref.text_id, text.strip()[:MAX_TEXT_CHARS]


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
