"""The novelty index: Chroma collections of persona and sample embeddings (cosine space).

A ``PersistentClient`` in the run directory by default (Chroma is thread-safe but not
process-safe: one run owns its store), or a Chroma server by URL for shared use. The index is
derived data: ``reconcile`` rebuilds it from the run's JSONL files after a crash.

Two things keep the check cheap (see docs/benchmarks.md):

- Adds are buffered and written to Chroma in batches: one Chroma write costs about as much
  for 64 vectors as for one (7-15 ms here), and a run adds one vector per accepted sample.
  ``nearest`` compares with the buffered vectors exactly (NumPy), so a lookup sees every add
  at once. The buffer is written out when it is full, by any method that reads the whole
  collection, by ``flush`` / ``close``, and at interpreter exit; if the process is killed
  first, ``reconcile`` restores the lost adds from the JSONL files on the next open.
- ``nearest`` does not ask Chroma for the collection's size (a row count in SQLite, which
  grows with the store and cost more than the query itself at 20k vectors).

And one keeps it right: HNSW looks at ``EF_SEARCH`` candidates per lookup, not Chroma's
default 100, which at 1M stored vectors missed about one near-duplicate in ten.

A store on a Chroma server (``url``) is reached through ``_Retrying``: a call that finds the
server not answering is tried again a few times (``RETRY_DELAYS``, about 15 s in all), then
fails with ``StoreUnavailable`` naming the URL; so does a call whose collection is gone from
the server (restarted on another path). Chroma's HTTP client has no timeout of its own; one
is set (``HTTP_TIMEOUT``).

One keeps the run directory clean: Chroma's hnswlib writes the unused capacity of its
``length.bin`` and ``data_level0.bin`` files from memory it allocated and never zeroed
(chroma-core/chroma#7688), so they could hold whatever the process had freed: an HTTP
request's headers, with the API key in them, were found there. ``scrub_segment`` zeroes the
bytes past the stored elements whenever Chroma has (re)written those files.
"""

from __future__ import annotations

import functools
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
import httpx
import numpy as np
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from chromadb.errors import InternalError, NotFoundError

from personaloom.errors import StoreUnavailable

PERSONAS = "personas"
SAMPLES = "samples"
AVOID = "avoid"  # eval or test items samples must not resemble (novelty.avoid), never samples
FLUSH_AT = 64  # buffered adds per collection before they are written to Chroma
# Candidates HNSW examines per lookup. Measured at 1M clustered vectors (docs/benchmarks.md):
# 100 found 89% of near-duplicate copies, 400 found 98% (800 no more) for p50 2.4 ms.
EF_SEARCH = 400
_NEAREST = 2  # the nearest two, so that one can be excluded (the query's own id)
# hnswlib's header.bin starts with its persistence version, offsetLevel0_, max_elements_,
# cur_element_count and size_data_per_element_ (native byte order and widths).
_HNSW_HEADER = struct.Struct("=iQQQQ")
_ZEROS = bytes(1 << 20)
# Seconds between attempts at a Chroma server that does not answer (a restart takes 2-3 s).
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
HTTP_TIMEOUT = httpx.Timeout(120.0, connect=5.0)  # a whole collection's ids can take a while


@dataclass(frozen=True)
class Neighbour:
    id: str
    similarity: float
    document: str


@dataclass
class _Buffer:
    """Adds not yet written to Chroma, in order; a later add of the same id replaces it."""

    rows: dict[str, tuple[list[float], str, dict[str, Any] | None]] = field(default_factory=dict)

    def take(self) -> dict[str, tuple[list[float], str, dict[str, Any] | None]]:
        rows, self.rows = self.rows, {}
        return rows


def _write(
    collection: Any, rows: dict[str, tuple[list[float], str, dict[str, Any] | None]], batch: int
) -> None:
    items = list(rows.items())
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        metadatas = [meta for _, (_, _, meta) in chunk]
        collection.upsert(
            ids=[id_ for id_, _ in chunk],
            embeddings=[vector for _, (vector, _, _) in chunk],
            documents=[document for _, (_, document, _) in chunk],
            metadatas=metadatas if any(metadatas) else None,
        )


def _flush_all(
    collections: dict[str, Any],
    buffers: dict[str, _Buffer],
    lock: Any,
    batch: int,
    scrub: Callable[[], None],
) -> None:
    with lock:
        for name, buffer in buffers.items():
            rows = buffer.take()
            if rows:
                _write(collections[name], rows, batch)
        scrub()


def _flush_at_exit(*args: Any) -> None:
    """``_flush_all`` for an index nobody closed: at exit a failure cannot be raised to
    anyone, and Chroma is derived data, so one line says what happens next."""
    try:
        _flush_all(*args)
    except Exception as exc:  # noqa: BLE001 - a full disk, or Chroma's own errors
        print(
            f"note: the last novelty-index entries were not written ({type(exc).__name__}: "
            f"{exc}); the next run or resume adds them again from dataset.jsonl",
            file=sys.stderr,
        )


def _settings() -> Settings:
    """Chroma's clients write their host, port or path into the settings they get: one each."""
    return Settings(anonymized_telemetry=False)


class _Server:
    """A Chroma server's URL and when calls to it last gave up, shared by every client and
    collection of the process on that URL (``_SERVERS``): for ``QUIET`` seconds after the
    retries gave up, calls try once, so that the run's index, its memory and the closing of
    both after the error (at exit too) do not each wait for the server again."""

    QUIET = 60.0

    def __init__(self, url: str):
        self.url = url
        self.gave_up: float | None = None

    def call(self, method: Callable[..., Any], collection: str | None, /, *args: Any, **kw: Any):
        started = time.monotonic()
        quiet = self.gave_up is not None and started - self.gave_up < self.QUIET
        delays = () if quiet else RETRY_DELAYS
        made = 0
        failure: Exception | None = None
        for attempt in range(len(delays) + 1):
            if attempt and self.gave_up is not None and self.gave_up >= started:
                break  # a call in another thread gave up meanwhile
            made += 1
            try:
                result = method(*args, **kw)
            except httpx.TimeoutException as exc:
                self.gave_up = time.monotonic()
                raise self._unavailable(exc, "did not answer in time") from None
            except httpx.TransportError as exc:
                failure = exc
            except InternalError as exc:
                # A collection queried just as its first vectors reach the server's disk
                # ("Error creating hnsw segment reader: Nothing found on disk", seen with Ray
                # workers querying while the coordinator writes): it answers a moment later.
                if "Nothing found on disk" not in str(exc):
                    raise
                failure = exc
            except NotFoundError as exc:
                if collection is None:  # a client's lookup of a collection that is not there
                    raise
                raise StoreUnavailable(
                    f"the collection {collection} is gone from the Chroma server at {self.url} "
                    f"(restarted on another path, or deleted: {exc}); resume the run, which "
                    "rebuilds it from the run directory"
                ) from None
            else:
                self.gave_up = None
                return (
                    _Retrying(result, self, result.name)
                    if isinstance(result, Collection)
                    else result
                )
            if attempt < len(delays):
                time.sleep(delays[attempt])
        self.gave_up = time.monotonic()
        tries = f"after {made} attempts over {self.gave_up - started:.0f} s" if delays else "again"
        raise self._unavailable(failure, f"did not answer {tries}")

    def _unavailable(self, exc: Exception | None, what: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"the Chroma server at {self.url} {what} ({type(exc).__name__}: {exc})"
        )


_SERVERS: dict[str, _Server] = {}


class _Retrying:
    """A Chroma client or collection on a server: its methods go through ``_Server.call``."""

    def __init__(self, target: Any, server: _Server, collection: str | None = None):
        self._target, self._server, self._name = target, server, collection

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        return functools.partial(self._server.call, value, self._name)


def connect(url: str) -> Any:
    """A client of the Chroma server at ``url``, retrying while it does not answer."""
    parts = urlsplit(url)
    server = _SERVERS.setdefault(url, _Server(url))

    def client() -> Any:
        try:
            made = chromadb.HttpClient(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 8000,
                ssl=parts.scheme == "https",
                settings=_settings(),
            )
        except ValueError as exc:  # chromadb's wording of a server it could not reach
            if "could not connect" not in str(exc).lower():
                raise
            raise httpx.ConnectError(str(exc)) from None
        session = getattr(getattr(made, "_server", None), "_session", None)
        if session is not None:  # chromadb's own session never times out
            session.timeout = HTTP_TIMEOUT
        return made

    return _Retrying(server.call(client, None), server)


def run_prefix(key: str) -> str:
    """The Chroma names of a run's collections on a shared server start with this
    (``run-KEY-samples``, ``run-KEY-personas``; ``KEY`` is run.json's ``store_key``)."""
    return f"run-{key}-"


def stored_vectors(url: str, name: str) -> dict[str, list[float]]:
    """Every embedding of the collection ``name`` on the server at ``url``, by id, read
    without creating anything ({} when the collection is not there)."""
    try:
        got = connect(url).get_collection(name).get(include=["embeddings"])
    except NotFoundError:
        return {}
    return {id_: list(map(float, v)) for id_, v in zip(got["ids"], got["embeddings"], strict=True)}


def local_client(path: Path) -> Any:
    """Chroma's embedded client of the store at ``path`` (one per path per process)."""
    return chromadb.PersistentClient(path=str(path), settings=_settings())


def _collection(client: Any, name: str, metadata: dict[str, Any] | None = None) -> Any:
    hnsw = {"space": "cosine", "ef_search": EF_SEARCH}
    col = client.get_or_create_collection(
        name, configuration={"hnsw": hnsw}, metadata=metadata, embedding_function=None
    )
    found = ((col.configuration or {}).get("hnsw") or {}).get("ef_search")
    if found is not None and found < EF_SEARCH:
        # A store created before (get_or_create keeps its settings): Chroma applies the new
        # value when a process first loads the index, which has not happened yet here.
        col.modify(configuration={"hnsw": {"ef_search": EF_SEARCH}})
    return col


def scrub_segment(segment: Path) -> bool:
    """Zero what an HNSW segment's files hold past their stored elements (see the module
    docstring); False, touching nothing, when the files are not laid out as expected."""
    try:
        _, _, capacity, count, per_element = _HNSW_HEADER.unpack_from(
            (segment / "header.bin").read_bytes()
        )
        files = [(segment / "length.bin", 4), (segment / "data_level0.bin", per_element)]
        sizes = [path.stat().st_size for path, _ in files]
    except (OSError, struct.error):
        return False
    if count > capacity or any(s != capacity * w for s, (_, w) in zip(sizes, files, strict=True)):
        return False
    for (path, width), size in zip(files, sizes, strict=True):
        with path.open("r+b") as file:
            offset = count * width
            while offset < size:
                file.seek(offset)
                chunk = file.read(min(size - offset, len(_ZEROS)))
                if chunk.count(0) != len(chunk):  # write only what is not zero already
                    file.seek(offset)
                    file.write(_ZEROS[: len(chunk)])
                offset += len(chunk)
    return True


def _stamp(segment: Path) -> tuple[int, ...]:
    stats = [(segment / name).stat() for name in ("header.bin", "length.bin", "data_level0.bin")]
    return tuple(n for st in stats for n in (st.st_size, st.st_mtime_ns))


def _scrub_store(path: Path | None, scrubbed: dict[Path, tuple[int, ...]]) -> None:
    """Scrub every HNSW segment of a local store whose files changed since their last scrub."""
    if path is None:
        return
    for header in path.glob("*/header.bin"):
        segment = header.parent
        try:
            if scrubbed.get(segment) != _stamp(segment) and scrub_segment(segment):
                scrubbed[segment] = _stamp(segment)
        except OSError:
            continue


def discard_clients(path: Path) -> None:
    """Forget Chroma's process-wide client for the store at ``path``: Chroma hands out one
    system per path, so a store that failed to open would otherwise be reused as it was."""
    from chromadb.api.shared_system_client import SharedSystemClient

    system = SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)
    if system is not None:
        try:
            system.stop()
        except Exception:  # noqa: BLE001, S110 - a broken store may not stop cleanly either
            pass


class NoveltyIndex:
    def __init__(
        self,
        path: Path | None = None,
        *,
        url: str | None = None,
        prefix: str = "",
        collections: Mapping[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        """The store at ``path``, or on the server at ``url``: ``collections`` maps the names
        callers use to Chroma's (default: ``personas``, ``samples`` and ``avoid``, Chroma names
        ``prefix + name``); a collection made here gets ``metadata``."""
        # Scrubs the local store's HNSW files; segment -> its files' sizes and times when last
        # scrubbed. A partial, not a method, so the exit finalizer holds no reference to self.
        self._scrub = functools.partial(_scrub_store, None if url else path, {})
        self._shared = bool(url)  # on a server, other processes write to the collections too
        if url:
            self._client = connect(url)
        else:
            assert path is not None
            self._client = local_client(path)
        self.names = dict(
            collections or {name: prefix + name for name in (PERSONAS, SAMPLES, AVOID)}
        )
        self._collections = {
            name: _collection(self._client, full, metadata) for name, full in self.names.items()
        }
        self._batch = max(1, int(self._client.get_max_batch_size()))
        self._lock = threading.RLock()
        self._buffers = {name: _Buffer() for name in self._collections}
        # Whether Chroma holds anything: counted once here, then kept up to date.
        self._stored = {name: col.count() > 0 for name, col in self._collections.items()}
        self._finalizer = weakref.finalize(
            self,
            _flush_at_exit,
            self._collections,
            self._buffers,
            self._lock,
            self._batch,
            self._scrub,
        )
        self._scrub()

    def nearest(
        self,
        collection: str,
        embedding: list[float],
        *,
        exclude: str | None = None,
        hide: Container[str] = (),
    ) -> Neighbour | None:
        """The most similar stored vector, passing over ``exclude`` and the ids in ``hide``
        (the streaming engine hides samples a draft must not see yet; any container will do,
        so a Ray worker hides by rule the samples committed after it got the draft)."""
        with self._lock:
            pending = dict(self._buffers[collection].rows)
            stored = self._stored[collection]
        if not stored and self._shared:  # another process (a coordinator) may have added some
            stored = self._stored[collection] = self._collections[collection].count() > 0

        def skip(id_: str) -> bool:
            return id_ == exclude or id_ in hide

        best = nearest_among(pending, embedding, skip)
        if stored:
            found = self._query(collection, embedding, lambda i: i in pending or skip(i))
            if found is not None and (best is None or found.similarity > best.similarity):
                best = found
        return best

    def _query(
        self, collection: str, embedding: list[float], skip: Callable[[str], bool]
    ) -> Neighbour | None:
        """Chroma's nearest vector not skipped (buffered adds of the same id are newer than
        what Chroma holds, hidden and excluded ids are passed over): the nearest two first,
        then more until one is not skipped or the collection has no more."""
        col = self._collections[collection]
        wanted = _NEAREST
        while True:
            result = col.query(
                query_embeddings=[embedding], n_results=wanted, include=["distances", "documents"]
            )
            ids = result["ids"][0]
            for id_, distance, document in zip(
                ids, result["distances"][0], result["documents"][0], strict=True
            ):
                if not skip(id_):
                    return Neighbour(
                        id=id_, similarity=1.0 - float(distance), document=document or ""
                    )
            if len(ids) < wanted:
                return None
            wanted *= 4  # rare: skipped ids took every place asked for

    def add(
        self,
        collection: str,
        id_: str,
        embedding: list[float],
        document: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            buffer = self._buffers[collection]
            buffer.rows.pop(id_, None)  # keep the order of adds
            buffer.rows[id_] = (list(embedding), document, metadata or None)
            if len(buffer.rows) >= FLUSH_AT:
                self._flush(collection)

    def add_many(
        self,
        collection: str,
        ids: list[str],
        embeddings: Any,
        documents: list[str],
    ) -> None:
        """Write many vectors at once, in Chroma's largest batches (for bulk loads)."""
        self.flush(collection)
        col = self._collections[collection]
        for start in range(0, len(ids), self._batch):
            end = start + self._batch
            col.upsert(
                ids=ids[start:end], embeddings=embeddings[start:end], documents=documents[start:end]
            )
        if ids:
            with self._lock:
                self._stored[collection] = True
                self._scrub()

    def _flush(self, collection: str) -> None:
        rows = self._buffers[collection].take()
        if rows:
            _write(self._collections[collection], rows, self._batch)
            self._stored[collection] = True
            self._scrub()

    def flush(self, collection: str | None = None) -> None:
        """Write buffered adds to Chroma (all collections by default)."""
        with self._lock:
            for name in [collection] if collection else list(self._buffers):
                self._flush(name)

    def close(self) -> None:
        self.flush()

    def collection(self, name: str) -> Any:
        """The Chroma collection itself, for queries this class does not make (novelty
        memory's); its buffered adds are not in it until ``flush``."""
        return self._collections[name]

    def ids(self, collection: str) -> set[str]:
        self.flush(collection)
        return set(self._collections[collection].get(include=[])["ids"])

    def delete(self, collection: str, ids: list[str]) -> None:
        if ids:
            with self._lock:
                self._flush(collection)
                col = self._collections[collection]
                for start in range(0, len(ids), self._batch):
                    col.delete(ids=ids[start : start + self._batch])
                self._stored[collection] = col.count() > 0
                self._scrub()

    def reconcile(self, collection: str, wanted: dict[str, str], embed: Any) -> tuple[int, int]:
        """Make the collection hold exactly ``wanted`` (id -> document); (added, removed)."""
        present = self.ids(collection)
        stale = sorted(present - set(wanted))
        self.delete(collection, stale)
        missing = [id_ for id_ in wanted if id_ not in present]
        if missing:
            vectors = embed([wanted[id_] for id_ in missing])
            self.add_many(collection, missing, vectors, [wanted[i] for i in missing])
        return len(missing), len(stale)

    def vectors(self, collection: str) -> dict[str, list[float]]:
        """Every stored embedding by id (for the report's diversity measures)."""
        self.flush(collection)
        got = self._collections[collection].get(include=["embeddings"])
        return {
            id_: list(map(float, v)) for id_, v in zip(got["ids"], got["embeddings"], strict=True)
        }


def nearest_among(
    rows: Mapping[str, tuple[Any, ...]],
    embedding: list[float],
    skip: Callable[[str], bool] = lambda _: False,
) -> Neighbour | None:
    """Exact cosine nearest neighbour among ``rows`` (id -> (vector, document, ...)), passing
    over the ids ``skip`` names: the buffered adds, or any few vectors a caller holds."""
    ids = [id_ for id_ in rows if not skip(id_)]
    if not ids:
        return None
    matrix = np.asarray([rows[id_][0] for id_ in ids], dtype=np.float64)
    query = np.asarray(embedding, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
    similarity = (matrix @ query) / np.where(norms == 0, 1.0, norms)
    best = int(np.argmax(similarity))
    similar = min(1.0, float(similarity[best]))
    return Neighbour(id=ids[best], similarity=similar, document=rows[ids[best]][1])
