"""Test helpers for runs on a real Chroma server: a listener that kills the server mid-run
and brings it back, and the ids a run's collection holds on the server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from personaloom.chroma_server import ChromaServer
from personaloom.store import RUN_JSON
from personaloom.vectors import SAMPLES, connect, run_prefix


def server_ids(url: str, run_dir: Path, collection: str = SAMPLES) -> set[str]:
    key = json.loads((run_dir / RUN_JSON).read_text())["store_key"]
    return set(connect(url).get_collection(run_prefix(key) + collection).get(include=[])["ids"])


class KillAfter:
    """A listener that SIGKILLs the server once ``accepted`` samples are in, and starts it
    again on the same path and port ``then`` seconds later (``None``: not at all)."""

    def __init__(self, server: ChromaServer, accepted: int, then: float | None):
        self.server, self.accepted, self.then = server, accepted, then
        self.back_at: float | None = None  # when the server answered again
        self.finished_at: float | None = None

    def __call__(self, event: dict) -> None:
        if event["event"] == "sample_accepted" and event["accepted"] == self.accepted:
            self.server.kill()
            if self.then is not None:
                threading.Timer(self.then, self._restart).start()
        if event["event"] == "run_finished":
            self.finished_at = time.monotonic()

    def _restart(self) -> None:
        self.server.start()
        self.back_at = time.monotonic()
