"""Novelty memory: the accepted samples of every run that names it, kept across runs, so a
new run rejects a draft that near-duplicates an earlier run's sample (``seen_before``).

``novelty.memory: NAME`` is one Chroma collection, ``memory-NAME``: on the run's Chroma
server when it has one (``novelty.store`` or ``--chroma-url``), otherwise in a local store of
its own, ``memory_dir()/NAME/``. A run adds each sample when it accepts it, with the id
``RUN_KEY/SAMPLE_ID`` (``RUN_KEY`` is run.json's ``store_key``) and the run, its directory
and the sample id as metadata; adds are buffered like the run's own index (64 at a time,
and at the end of the session). A run never matches its own samples here: its own index
does that, as ``near_duplicate``.

Unlike a run's index, memory is not derived from one run directory (it outlives them), but
each run's share of it is: when a run opens, its entries are made to match its
dataset.jsonl (a kill can lose the last buffered adds, or leave an add whose sample was not
written).

A local memory is a Chroma ``PersistentClient``, which is not process-safe: the run holds
``NAME/.lock`` (a ``flock``) for its whole session, and a second run or a ``personaloom
memory`` command on the same memory meanwhile is refused. Runs that share a memory at the
same time need a Chroma server.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from personaloom.errors import ConfigError
from personaloom.runlock import RunLock
from personaloom.spec import MEMORY_NAME
from personaloom.vectors import Neighbour, NoveltyIndex, connect, discard_clients, local_client

PREFIX = "memory-"  # Chroma collection names of memories
SAMPLES = "samples"  # the index's name for a memory's one collection
_FIRST = 8  # nearest entries asked for first; more only when this run's own fill them
_PAGE = 5000  # entries read at a time by `show`


def memory_dir() -> Path:
    """Where local memories live: ``$PERSONALOOM_MEMORY_DIR``, else
    ``$XDG_DATA_HOME/personaloom/memory``, else ``~/.local/share/personaloom/memory``. Not
    under the cache folder: clearing a cache must not forget what earlier runs made."""
    env = os.environ.get("PERSONALOOM_MEMORY_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "personaloom" / "memory"


def check_name(name: str) -> str:
    if not re.fullmatch(MEMORY_NAME, name):
        raise ConfigError(
            f"{name!r} is not a memory name: 1-64 letters, digits, '-' or '_', starting and "
            "ending with a letter or digit"
        )
    return name


class MemoryLock(RunLock):
    """The flock of one local memory's folder."""

    def busy(self, holder: str) -> ConfigError:
        return ConfigError(
            f"the novelty memory at {self.path.parent} is in use by another personaloom "
            f"process (pid {holder}): a local memory serves one process at a time; wait for "
            "it to end, or share the memory through a Chroma server (novelty.store)"
        )


class NoveltyMemory:
    """One memory as a run uses it: ``match`` drafts against other runs' samples, and
    ``remember`` accepted ones."""

    def __init__(
        self,
        name: str,
        index: NoveltyIndex,
        run_key: str,
        run_dir: Path,
        where: str,
        local: Path | None = None,
        lock: MemoryLock | None = None,
    ):
        self.name, self.where = name, where
        self._index, self._run_key, self._own = index, run_key, run_key + "/"
        self._run_dir = str(run_dir.resolve())
        self._local, self._lock = local, lock

    def match(self, embedding: list[float], threshold: float) -> Neighbour | None:
        """The nearest sample of another run at or above ``threshold``, if any.

        This run's own entries are passed over; only when they fill every place asked for
        (each at or above the threshold) is Chroma asked for more."""
        collection = self._index.collection(SAMPLES)
        wanted = _FIRST
        while True:
            found = collection.query(
                query_embeddings=[embedding], n_results=wanted, include=["distances", "documents"]
            )
            ids = found["ids"][0]
            for id_, distance, document in zip(
                ids, found["distances"][0], found["documents"][0], strict=True
            ):
                similarity = 1.0 - float(distance)
                if similarity < threshold:
                    return None
                if not id_.startswith(self._own):
                    return Neighbour(id=id_, similarity=similarity, document=document or "")
            if len(ids) < wanted:
                return None
            wanted *= 4

    def remember(self, sample_id: str, embedding: list[float], document: str) -> None:
        self._index.add(
            SAMPLES, self._own + sample_id, embedding, document, self._metadata(sample_id)
        )

    def _metadata(self, sample_id: str) -> dict[str, Any]:
        return {"run": self._run_key, "sample_id": sample_id, "run_dir": self._run_dir}

    def reconcile(
        self, wanted: dict[str, str], embed: Callable[[list[str]], Any]
    ) -> tuple[int, int]:
        """Make this run's entries exactly ``wanted`` (sample id -> document); (added,
        removed). Other runs' entries are not touched."""
        self._index.flush()
        collection = self._index.collection(SAMPLES)
        present = {
            id_.removeprefix(self._own)
            for id_ in collection.get(where={"run": self._run_key}, include=[])["ids"]
        }
        stale = sorted(present - set(wanted))
        if stale:
            collection.delete(ids=[self._own + id_ for id_ in stale])
        missing = [id_ for id_ in wanted if id_ not in present]
        if missing:
            vectors = embed([wanted[id_] for id_ in missing])
            for id_, vector in zip(missing, vectors, strict=True):
                self._index.add(
                    SAMPLES,
                    self._own + id_,
                    list(vector),
                    wanted[id_],
                    self._metadata(id_),
                )
            self._index.flush()
        return len(missing), len(stale)

    def close(self) -> None:
        """Write the buffered adds, then let go of a local store (another process may use it
        next, so Chroma's client for its path is forgotten too)."""
        try:
            self._index.close()
        finally:
            if self._local is not None:
                discard_clients(self._local)
            if self._lock is not None:
                self._lock.release()


def _collections(name: str) -> dict[str, str]:
    return {SAMPLES: PREFIX + name}


def _metadata(embedder: str) -> dict[str, Any]:
    return {"embedder": embedder, "created": datetime.now().isoformat(timespec="seconds")}


def _check_embedder(name: str, index: NoveltyIndex, embedder: str, where: str) -> None:
    """Vectors of two embedders do not compare: a memory keeps the one it was made with."""
    kept = (index.collection(SAMPLES).metadata or {}).get("embedder")
    if kept and kept != embedder:
        raise ConfigError(
            f"novelty memory {name!r} ({where}) holds embeddings of {kept}, and this run embeds "
            f"with {embedder}: they cannot be compared; use the same embeddings, or another "
            "novelty.memory name"
        )


def open_memory(
    name: str, *, url: str | None, embedder: str, run_key: str, run_dir: Path
) -> NoveltyMemory:
    """The memory ``name`` for a run: on the server at ``url``, else local (locked)."""
    if url:
        where = f"on the Chroma server at {url}"
        index = NoveltyIndex(url=url, collections=_collections(name), metadata=_metadata(embedder))
        _check_embedder(name, index, embedder, where)
        return NoveltyMemory(name, index, run_key, run_dir, where)
    folder = memory_dir() / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = MemoryLock(folder).acquire()
    try:
        index = NoveltyIndex(folder, collections=_collections(name), metadata=_metadata(embedder))
        _check_embedder(name, index, embedder, f"in {folder}")
    except BaseException:
        discard_clients(folder)
        lock.release()
        raise
    return NoveltyMemory(name, index, run_key, run_dir, f"in {folder}", local=folder, lock=lock)


# -- `personaloom memory list | show | drop` -------------------------------------------------


@dataclass(frozen=True)
class MemoryInfo:
    name: str
    where: str
    samples: int | None  # None when it could not be read (a run holds it)
    embedder: str | None = None
    created: str | None = None
    note: str = ""


@dataclass(frozen=True)
class RunShare:
    """One run's samples in a memory."""

    run: str  # its store_key
    samples: int
    run_dir: str | None


def _info(name: str, where: str, collection: Any) -> MemoryInfo:
    meta = collection.metadata or {}
    return MemoryInfo(name, where, collection.count(), meta.get("embedder"), meta.get("created"))


def _get(client: Any, name: str, where: str) -> Any:
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(PREFIX + name)
    except NotFoundError:
        raise ConfigError(f"there is no novelty memory {name!r} {where}") from None


class _LocalStore:
    """A local memory's store, opened under its lock for one command."""

    def __init__(self, name: str):
        self.folder = memory_dir() / check_name(name)
        self.where = f"in {self.folder}"
        if not (self.folder / "chroma.sqlite3").is_file():
            raise ConfigError(f"there is no novelty memory {name!r} {self.where}")
        self._lock = MemoryLock(self.folder)

    def __enter__(self) -> Any:
        self._lock.acquire()
        return local_client(self.folder)

    def __exit__(self, *exc_info: object) -> None:
        discard_clients(self.folder)
        self._lock.release()


def list_memories(url: str | None = None) -> list[MemoryInfo]:
    """Every memory on the server at ``url``, or in the local memory folder."""
    if url:
        client, where = connect(url), f"on the Chroma server at {url}"
        found = [c for c in client.list_collections() if c.name.startswith(PREFIX)]
        return sorted(
            (_info(c.name.removeprefix(PREFIX), where, c) for c in found), key=lambda m: m.name
        )
    root = memory_dir()
    result = []
    for store in sorted(root.glob("*/chroma.sqlite3")) if root.is_dir() else []:
        name = store.parent.name
        try:
            with _LocalStore(name) as client:
                result.append(_info(name, f"in {store.parent}", _get(client, name, "")))
        except ConfigError as exc:  # held by a run, or a folder that is not a memory
            result.append(MemoryInfo(name, f"in {store.parent}", None, note=str(exc)))
    return result


def show_memory(name: str, url: str | None = None) -> tuple[MemoryInfo, list[RunShare]]:
    """A memory and, per run that added to it, how many of its samples it holds."""
    check_name(name)
    if url:
        client, where = connect(url), f"on the Chroma server at {url}"
        return _show(name, where, _get(client, name, where))
    store = _LocalStore(name)
    with store as client:
        return _show(name, store.where, _get(client, name, store.where))


def _show(name: str, where: str, collection: Any) -> tuple[MemoryInfo, list[RunShare]]:
    counts: Counter[str] = Counter()
    dirs: dict[str, str | None] = {}
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
        for meta in page["metadatas"] or []:
            run = (meta or {}).get("run") or "?"
            counts[run] += 1
            dirs.setdefault(run, (meta or {}).get("run_dir"))
        if len(page["ids"]) < _PAGE:
            break
        offset += _PAGE
    runs = [RunShare(run, n, dirs.get(run)) for run, n in sorted(counts.items())]
    return _info(name, where, collection), runs


def drop_memory(name: str, url: str | None = None) -> MemoryInfo:
    """Delete a memory; returns what it was."""
    check_name(name)
    if url:
        client, where = connect(url), f"on the Chroma server at {url}"
        info = _info(name, where, _get(client, name, where))
        client.delete_collection(PREFIX + name)
        return info
    store = _LocalStore(name)
    with store as client:
        info = _info(name, store.where, _get(client, name, store.where))
        discard_clients(store.folder)  # before its files go
        shutil.rmtree(store.folder)
    return info
