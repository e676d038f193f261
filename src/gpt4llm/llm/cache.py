"""SQLite request cache: rerun = zero calls; a killed run resumes without paying twice.

One row per finished request, keyed by the sha256 of everything that determines the answer
(backend, model, base_url, messages, sampling params including `sample_index`) — never the
API key. Each row is committed as soon as its call returns (WAL mode, `synchronous=NORMAL`:
a committed row survives the process being SIGKILLed; only a power cut can lose the last
few). Failed calls are not stored, so a rerun retries them. Several processes may share one
file: WAL lets readers run beside the writer and `busy_timeout` makes writers wait their turn.
The schema is versioned by a `_migrations` table (the habit of simonw/llm).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError
from gpt4llm.llm.base import Completion, Request

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_responses(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE responses (
            key TEXT PRIMARY KEY,
            backend TEXT NOT NULL,
            model TEXT NOT NULL,
            request TEXT NOT NULL,          -- JSON: messages + params (never the key)
            completion TEXT NOT NULL,       -- JSON: Completion.to_dict()
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost REAL NOT NULL,             -- USD paid for this call
            created REAL NOT NULL           -- unix time
        )"""
    )
    db.execute("CREATE INDEX responses_model ON responses(model)")


def request_json(identity: dict[str, Any], request: Request) -> str:
    """The canonical text hashed into the cache key (also stored for inspection)."""
    return json.dumps(
        {**identity, "messages": request.messages, "params": asdict(request.params)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )


def cache_key(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise UserError(f"{self.path}: request cache path is a directory, expected a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; each put is one transaction.
            self.db = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
            self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as e:
            raise UserError(f"{self.path}: cannot open the request cache ({e})") from None
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        done = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
        if all(name in done for name, _ in MIGRATIONS):
            return
        self.db.execute("BEGIN IMMEDIATE")  # another process may be migrating at the same moment
        try:
            done = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
            for name, fn in MIGRATIONS:
                if name not in done:
                    fn(self.db)
                    self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def get_many(self, keys: list[str]) -> dict[str, tuple[Completion, float]]:
        """{key: (completion, cost)} for the keys present."""
        out: dict[str, tuple[Completion, float]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), 500):
                chunk = unique[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, comp, cost in self.db.execute(f"SELECT key, completion, cost FROM responses WHERE key IN ({marks})", chunk):
                    out[key] = (Completion.from_dict(json.loads(comp)), cost)
        return out

    def put(self, key: str, identity: dict[str, Any], canonical: str, completion: Completion, cost: float) -> None:
        row = (
            key,
            identity.get("backend", ""),
            identity.get("model", ""),
            canonical,
            json.dumps(completion.to_dict(), ensure_ascii=False),
            completion.prompt_tokens,
            completion.completion_tokens,
            cost,
            time.time(),
        )
        with self._lock:
            # Autocommit mode: this statement is its own transaction, committed on return.
            self.db.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?)", row)

    def count(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()
