"""The small story spec that the tests and the benchmarks run against the scripted endpoint
(``personaloom.testing.scripted``), as a dict for each to adjust, and its writer.

It imports nothing from personaloom: ``bench/_common.py`` loads this file by its path, so that
``bench/compare.py``, which puts an older personaloom first on the path, runs both sides on
the working tree's spec.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


def story_spec(
    base_url: str,
    *,
    name: str = "stories",
    instruction: str = "Write a short story.",
    endpoint: Mapping[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A story spec aimed at the endpoint at ``base_url``: two traits of two values (2 samples
    each), personas mined from ``corpus/*.txt``, the word lists ``nouns.txt`` and
    ``verbs.txt``, embeddings from the endpoint. ``endpoint`` adds to or replaces the default
    model's settings; the other keyword arguments replace top-level sections."""
    spec: dict[str, Any] = {
        "name": name,
        "task": {
            "instruction": instruction,
            "output": {"title": "str", "story": "str"},
            "length": {"min_words": 10, "max_words": 400},
        },
        "corpus": [{"path": "corpus/*.txt"}],
        "personas": {"per_text": 2, "relate_depth": 1, "relate_per_persona": 2, "max_uses": 1},
        "traits": {
            "feature": {"values": ["dialogue", "moral"], "target": 2},
            "setting": {"values": ["forest", "sea"], "target": 2},
        },
        "vocabulary": {"noun": "nouns.txt", "verb": "verbs.txt"},
        "novelty": {"threshold": 0.9},
        "critic": {"min_score": 3, "max_revisions": 1},
        "budget": {"max_calls": 200},
        "models": {
            "default": {"base_url": base_url, "timeout": 10, "max_retries": 2, **(endpoint or {})}
        },
        "embeddings": {"provider": "openai", "model": "scripted-embed"},
        "concurrency": 2,
        "seed": 0,
    }
    spec.update(sections)
    return spec


def corpus_files(texts: Iterable[str]) -> dict[str, str]:
    """``corpus/00.txt``, ``corpus/01.txt``, ...: one text each, for ``write_spec``."""
    return {f"corpus/{i:02d}.txt": text + "\n" for i, text in enumerate(texts)}


def words_file(words: Iterable[str]) -> str:
    """A word list's text, one word a line."""
    return "".join(f"{word}\n" for word in words)


def write_spec(folder: Path, spec: Mapping[str, Any], files: Mapping[str, str]) -> Path:
    """``spec`` as ``folder/spec.yaml``, after ``files`` (path in ``folder`` -> text): the
    corpus and word lists it names. Returns the spec's path."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(dict(spec), sort_keys=False))
    return path
