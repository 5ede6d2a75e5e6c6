"""The novelty index: Chroma collections of persona and sample embeddings (cosine space).

A ``PersistentClient`` in the run directory by default (Chroma is thread-safe but not
process-safe: one run owns its store), or a Chroma server by URL for shared use. The index is
derived data: ``reconcile`` rebuilds it from the run's JSONL files after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
from chromadb.config import Settings

PERSONAS = "personas"
SAMPLES = "samples"


@dataclass(frozen=True)
class Neighbour:
    id: str
    similarity: float
    document: str


class NoveltyIndex:
    def __init__(self, path: Path | None = None, *, url: str | None = None, prefix: str = ""):
        if url:
            parts = urlsplit(url)
            self._client = chromadb.HttpClient(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 8000,
                ssl=parts.scheme == "https",
                settings=Settings(anonymized_telemetry=False),
            )
        else:
            assert path is not None
            self._client = chromadb.PersistentClient(
                path=str(path), settings=Settings(anonymized_telemetry=False)
            )
        self._collections = {
            name: self._client.get_or_create_collection(
                prefix + name, metadata={"hnsw:space": "cosine"}, embedding_function=None
            )
            for name in (PERSONAS, SAMPLES)
        }

    def nearest(
        self, collection: str, embedding: list[float], *, exclude: str | None = None
    ) -> Neighbour | None:
        col = self._collections[collection]
        count = col.count()
        if count == 0:
            return None
        result = col.query(
            query_embeddings=[embedding],
            n_results=min(2, count),
            include=["distances", "documents"],
        )
        for id_, distance, document in zip(
            result["ids"][0], result["distances"][0], result["documents"][0], strict=True
        ):
            if id_ != exclude:
                return Neighbour(id=id_, similarity=1.0 - float(distance), document=document or "")
        return None

    def add(
        self,
        collection: str,
        id_: str,
        embedding: list[float],
        document: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._collections[collection].upsert(
            ids=[id_],
            embeddings=[embedding],
            documents=[document],
            metadatas=[metadata] if metadata else None,
        )

    def ids(self, collection: str) -> set[str]:
        return set(self._collections[collection].get(include=[])["ids"])

    def delete(self, collection: str, ids: list[str]) -> None:
        if ids:
            self._collections[collection].delete(ids=ids)

    def reconcile(self, collection: str, wanted: dict[str, str], embed: Any) -> tuple[int, int]:
        """Make the collection hold exactly ``wanted`` (id -> document); (added, removed)."""
        present = self.ids(collection)
        stale = sorted(present - set(wanted))
        self.delete(collection, stale)
        missing = [id_ for id_ in wanted if id_ not in present]
        if missing:
            vectors = embed([wanted[id_] for id_ in missing])
            self._collections[collection].upsert(
                ids=missing, embeddings=vectors, documents=[wanted[i] for i in missing]
            )
        return len(missing), len(stale)

    def vectors(self, collection: str) -> dict[str, list[float]]:
        """Every stored embedding by id (for the report's diversity measures)."""
        got = self._collections[collection].get(include=["embeddings"])
        return {
            id_: list(map(float, v)) for id_, v in zip(got["ids"], got["embeddings"], strict=True)
        }
