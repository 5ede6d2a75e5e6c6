"""Shared fixtures: a scripted OpenAI-compatible endpoint on loopback and small specs.

Tests marked ``timing`` assert how fast something is (a key's latency, say): on a loaded
machine they fail for no fault of the code, so they are skipped unless asked for with
``--run-timing`` or ``PERSONALOOM_TIMING_TESTS=1``
(``PERSONALOOM_TIMING_TESTS=1 make test``, or ``pytest --run-timing -m timing``).
"""

from __future__ import annotations

import os
import signal
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from personaloom.testing.scripted import PersonaloomResponder, ScriptedEndpoint
from personaloom.testing.specs import corpus_files, story_spec, words_file, write_spec

REPO = Path(__file__).resolve().parents[1]
TIMING_ENV = "PERSONALOOM_TIMING_TESTS"

TEXTS = [
    "The harbour master posted new tide tables and a warning about the broken crane on pier 4.",
    "Our school garden grew forty pumpkins this year; the children weighed every single one.",
    "A review of the night bus: late, cold, but the driver sang old songs the whole way home.",
    "Minutes of the allotment society: the compost heap is on fire again, motion to buy a hose.",
    "The bakery raises bread prices by ten cents; rye flour doubled in cost since the spring.",
    "Trail report: the ridge path is icy above the second hut, crampons strongly recommended.",
]
NOUNS = ["dog", "ball", "boat", "hat", "cake"]
VERBS = ["jump", "run", "sing"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-timing",
        action="store_true",
        help=f"run the tests marked timing (or set {TIMING_ENV}=1); skipped by default",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip, not deselect: ``-m`` selections (``-m "not integration"``) stay as they are, and
    the summary says which timing tests did not run."""
    if config.getoption("--run-timing") or os.environ.get(TIMING_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"timing-sensitive: run with --run-timing or {TIMING_ENV}=1")
    for item in items:
        if "timing" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's endpoint, key, cache or novelty memory."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERSONALOOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PERSONALOOM_MEMORY_DIR", str(tmp_path / "memory"))


@pytest.fixture(autouse=True)
def _python_ctrl_c(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that leaves its own SIGINT handler behind is named, and the next test starts
    with Python's: Ctrl-C tests elsewhere in the run then mean what they say."""
    yield
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        warnings.warn(f"{request.node.nodeid} left a SIGINT handler behind", stacklevel=1)


@pytest.fixture
def responder() -> PersonaloomResponder:
    return PersonaloomResponder()


@pytest.fixture
def endpoint(responder: PersonaloomResponder) -> Iterator[ScriptedEndpoint]:
    with ScriptedEndpoint(responder) as server:
        yield server


SpecFactory = Callable[..., Path]


@pytest.fixture
def make_spec(tmp_path: Path, endpoint: ScriptedEndpoint) -> SpecFactory:
    """Write a small spec (and its corpus) aimed at the scripted endpoint; returns its path.

    Keyword arguments replace top-level sections of ``story_spec``'s.
    """

    def factory(name: str = "unit", **sections: Any) -> Path:
        files = corpus_files(TEXTS)
        files |= {"nouns.txt": words_file(NOUNS), "verbs.txt": words_file(VERBS)}
        return write_spec(
            tmp_path / name, story_spec(endpoint.base_url, name=name, **sections), files
        )

    return factory


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
