"""The trace store: every LLM call and graph event of a run, in ``traces.sqlite``.

SQLite in WAL mode so a dashboard or ``personaloom traces`` can read while a run writes.
Message texts are stored once in ``texts`` (keyed by their hash) and referenced from calls,
because the same system prompt or persona is sent thousands of times.
No API key is ever written here: calls record model parameters, never client credentials.

Calls are written at once, each in its own transaction (budgets count them after a crash).
Graph events, about eight per draft, are queued and written by a background thread in one
transaction every ``EVENT_FLUSH_SECONDS``: a transaction per event cost the event loop about
0.1 ms each (docs/benchmarks.md). Readers of this store flush the queue first; other readers
see events at most that much later; a killed process loses at most that much of them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    agent TEXT NOT NULL,
    node TEXT,
    sample_id TEXT,
    persona_id TEXT,
    template TEXT,
    template_hash TEXT,
    messages TEXT NOT NULL,          -- JSON list of {"role", "hash"} into texts
    params TEXT NOT NULL,            -- JSON: model, temperature, seed, strategy, ...
    schema_name TEXT,
    raw_reply TEXT,
    parsed TEXT,                     -- JSON of the parsed result
    error TEXT,
    status TEXT NOT NULL,            -- ok | error | parse_error
    latency_ms REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cache_hit INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 1,
    replay_of INTEGER,
    variables TEXT                   -- JSON: the template's inputs, for replay
);
CREATE INDEX IF NOT EXISTS calls_agent ON calls(agent);
CREATE INDEX IF NOT EXISTS calls_sample ON calls(sample_id);
CREATE INDEX IF NOT EXISTS calls_persona ON calls(persona_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    sample_id TEXT,
    persona_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
CREATE INDEX IF NOT EXISTS events_sample ON events(sample_id);
"""


@dataclass
class CallRecord:
    """One attempt at one LLM call, as it goes into the store."""

    agent: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    status: str
    node: str | None = None
    sample_id: str | None = None
    persona_id: str | None = None
    template: str | None = None
    template_hash: str | None = None
    schema_name: str | None = None
    raw_reply: str | None = None
    parsed: Any = None
    error: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cache_hit: bool = False
    attempt: int = 1
    replay_of: int | None = None
    variables: dict[str, Any] | None = None
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Usage:
    """Totals the budget and the report need."""

    calls: int = 0  # endpoint requests answered (cache hits and failed requests excluded)
    tokens: int = 0
    cache_hits: int = 0
    errors: int = 0


@dataclass(frozen=True)
class TokenUse:
    """Tokens of the calls one agent made to one model (what cost is computed from)."""

    agent: str
    model: str
    calls: int  # endpoint requests answered
    input_tokens: int
    output_tokens: int


EVENT_FLUSH_SECONDS = 0.05
_INSERT_EVENT = "INSERT INTO events(ts, kind, sample_id, persona_id, data) VALUES (?,?,?,?,?)"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _EventWriter:
    """Writes queued event rows in batches from its own thread (holds no reference to the
    store, so a store that is never closed is still flushed when collected or at exit)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self._db = db
        self._lock = lock  # the store's: one user of the connection at a time
        self._rows: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.error: sqlite3.Error | None = None  # why the thread stopped writing, if it did
        self._thread = threading.Thread(target=self._run, name="traces-events", daemon=True)
        self._thread.start()

    def put(self, row: tuple[Any, ...]) -> None:
        if self.error is not None:
            raise self.error
        with self._cond:
            if self._closed:
                raise RuntimeError("the trace store is closed")
            self._rows.append(row)
            if len(self._rows) == 1:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._rows and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            time.sleep(EVENT_FLUSH_SECONDS)  # let a batch gather
            try:
                self.flush()
            except sqlite3.Error as exc:  # a full disk: the run's own next write reports it
                self.error = exc
                return

    def flush(self) -> None:
        with self._lock:
            with self._cond:
                rows, self._rows = self._rows, []
            if rows:
                with self._db:
                    self._db.executemany(_INSERT_EVENT, rows)

    def close(self) -> None:
        """Write what is queued and stop the thread; the caller closes the connection."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()


class TraceStore:
    """Thread-safe writer and reader of ``traces.sqlite``."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
            if "variables" not in columns:  # a store written before replay existed
                self._db.execute("ALTER TABLE calls ADD COLUMN variables TEXT")
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._events: _EventWriter | None = None
        if not readonly:
            self._events = _EventWriter(self._db, self._lock)
            weakref.finalize(self, self._events.close)

    def flush(self) -> None:
        """Write queued events now (reads through this store do it themselves)."""
        if self._events is not None:
            self._events.flush()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
        with self._lock:
            self._db.close()

    def record_call(self, call: CallRecord) -> int:
        refs = []
        texts = []
        for message in call.messages:
            digest = _hash(message["content"])
            texts.append((digest, message["content"]))
            refs.append({"role": message["role"], "hash": digest})
        parsed = None if call.parsed is None else json.dumps(call.parsed, ensure_ascii=False)
        with self._lock, self._db:
            self._db.executemany("INSERT OR IGNORE INTO texts(hash, body) VALUES (?, ?)", texts)
            cursor = self._db.execute(
                """INSERT INTO calls(ts, agent, node, sample_id, persona_id, template,
                   template_hash, messages, params, schema_name, raw_reply, parsed, error,
                   status, latency_ms, prompt_tokens, completion_tokens, cache_hit, attempt,
                   replay_of, variables) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    call.ts,
                    call.agent,
                    call.node,
                    call.sample_id,
                    call.persona_id,
                    call.template,
                    call.template_hash,
                    json.dumps(refs),
                    json.dumps(call.params, sort_keys=True, default=str),
                    call.schema_name,
                    call.raw_reply,
                    parsed,
                    call.error,
                    call.status,
                    call.latency_ms,
                    call.prompt_tokens,
                    call.completion_tokens,
                    int(call.cache_hit),
                    call.attempt,
                    call.replay_of,
                    None
                    if call.variables is None
                    else json.dumps(call.variables, ensure_ascii=False, default=str),
                ),
            )
            return int(cursor.lastrowid or 0)

    def record_event(
        self,
        kind: str,
        data: dict[str, Any],
        *,
        sample_id: str | None = None,
        persona_id: str | None = None,
    ) -> None:
        row = (time.time(), kind, sample_id, persona_id, json.dumps(data, default=str))
        if self._events is None:
            raise RuntimeError("the trace store was opened read-only")
        self._events.put(row)

    def usage(self) -> Usage:
        self.flush()
        with self._lock:
            row = self._db.execute(
                """SELECT
                     COALESCE(SUM(CASE WHEN cache_hit = 0 AND status != 'error' THEN 1 END), 0),
                     COALESCE(SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), 0),
                     COALESCE(SUM(cache_hit), 0),
                     COALESCE(SUM(CASE WHEN status != 'ok' THEN 1 END), 0)
                   FROM calls WHERE replay_of IS NULL"""
            ).fetchone()
        return Usage(calls=row[0], tokens=row[1], cache_hits=row[2], errors=row[3])

    def token_usage(self) -> list[TokenUse]:
        """Tokens the endpoints reported, per agent and model, over the calls budgets count
        (replays excluded; cache hits report none): what cost is computed from."""
        self.flush()
        with self._lock:
            rows = self._db.execute(
                """SELECT agent, COALESCE(json_extract(params, '$.model'), ''),
                     COALESCE(SUM(CASE WHEN cache_hit = 0 AND status != 'error' THEN 1 END), 0),
                     COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)
                   FROM calls WHERE replay_of IS NULL GROUP BY 1, 2 ORDER BY 1, 2"""
            ).fetchall()
        return [TokenUse(*row) for row in rows]

    def calls(self, where: str = "", params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Call rows (messages left as references); ``where`` is a trusted SQL fragment."""
        self.flush()
        sql = "SELECT * FROM calls" + (f" WHERE {where}" if where else "") + " ORDER BY id"
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, tuple(params))]

    def messages(self, call: dict[str, Any]) -> list[dict[str, str]]:
        """The rendered messages of a call row, texts restored."""
        refs = json.loads(call["messages"])
        with self._lock:
            bodies = {
                row[0]: row[1]
                for row in self._db.execute(
                    f"SELECT hash, body FROM texts WHERE hash IN ({','.join('?' * len(refs))})",
                    [ref["hash"] for ref in refs],
                )
            }
        return [{"role": ref["role"], "content": bodies.get(ref["hash"], "")} for ref in refs]

    def events(
        self,
        kind: str | None = None,
        sample_id: str | None = None,
        *,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Events in order; ``after_id`` and ``limit`` let a follower read only what is new."""
        self.flush()
        where: list[str] = []
        params: list[Any] = []
        if after_id:
            where.append("id > ?")
            params.append(after_id)
        if kind:
            where.append("kind = ?")
            params.append(kind)
        if sample_id:
            where.append("sample_id = ?")
            params.append(sample_id)
        sql = "SELECT * FROM events" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit else "")
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [{**dict(row), "data": json.loads(row["data"])} for row in rows]
