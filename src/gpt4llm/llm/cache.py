"""SQLite request cache: rerun = zero calls; a killed run resumes without paying twice.

One row per finished request, keyed by the sha256 of everything that determines the answer
(backend, model, base_url, messages, sampling params including `sample_index`) — never the
API key. Each row is committed as soon as its call returns (WAL mode, `synchronous=NORMAL`:
a committed row survives the process being SIGKILLed; only a power cut can lose the last
few). Failed calls are not stored, so a rerun retries them. Several processes may share one
file: WAL lets readers run beside the writer and `busy_timeout` makes writers wait their turn.
The schema is versioned by a `_migrations` table (the habit of simonw/llm); a migration only
adds tables, so a file written by a newer gpt4llm still works with an older one.

A file that is not a SQLite database, or a damaged one, is a UserError naming the file (one
line, exit 2), never a traceback; so is a SQLite database that is not a request cache (found
read-only, before anything is written: see sqlite_check.py) and one locked by another process
past the busy timeout ($GPT4LLM_BUSY_TIMEOUT, else 60 s). `gpt4llm cache path | stats | clear`
(cache_cli.py) look inside: entries, size, tokens and cost per model, and how often cached
answers were reused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError
from gpt4llm.llm.base import Completion, Request
from gpt4llm.sqlite_check import busy_timeout, is_locked, locked, refuse_foreign

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_responses(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE responses (
            key TEXT PRIMARY KEY,
            backend TEXT NOT NULL,
            model TEXT NOT NULL,
            request TEXT NOT NULL,          -- JSON: messages + params (never the key)
            completion TEXT NOT NULL,       -- JSON: Completion.to_dict()
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost REAL NOT NULL,             -- USD paid for this call
            created REAL NOT NULL           -- unix time
        )""")
    db.execute("CREATE INDEX responses_model ON responses(model)")


@migration
def m002_batches(db: sqlite3.Connection) -> None:
    """Batch mode's state (see llm/batch.py): a killed run finds its uploads and batches here."""
    db.execute("""CREATE TABLE batch_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            uid TEXT NOT NULL UNIQUE,       -- names the uploaded file gpt4llm-batch-<uid>.jsonl
            identity TEXT NOT NULL,         -- JSON: backend, model, base_url (never the key)
            state TEXT NOT NULL,            -- new | uploaded | submitted | collected
            n_requests INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            input_file_id TEXT,
            batch_id TEXT,
            status TEXT,                    -- the provider's last reported status
            error TEXT,                     -- why it ended without (all) answers, one line
            created REAL NOT NULL,
            updated REAL NOT NULL
        )""")
    db.execute("""CREATE TABLE batch_items (
            job INTEGER NOT NULL REFERENCES batch_jobs(id),
            line INTEGER NOT NULL,          -- 1-based line of the uploaded file
            key TEXT NOT NULL,              -- the request's cache key, sent as custom_id
            request TEXT NOT NULL,          -- canonical request JSON, as responses.request
            body TEXT NOT NULL,             -- the JSONL line uploaded
            outcome TEXT,                   -- NULL until collected, then ok | retry | failed
            error TEXT,
            PRIMARY KEY (job, line)
        )""")
    db.execute("CREATE INDEX batch_items_key ON batch_items(key)")


@migration
def m003_hits(db: sqlite3.Connection) -> None:
    """How often each cached answer was served again. A table of its own: `responses` keeps its
    columns, so older versions of gpt4llm (which insert 9 positional values) still write."""
    db.execute(
        "CREATE TABLE response_hits "
        "(key TEXT PRIMARY KEY, hits INTEGER NOT NULL, last_hit REAL NOT NULL)"
    )


def damaged(path: Path, error: Exception) -> UserError:
    return UserError(
        f"{path}: the request cache is not a readable SQLite database ({error}); move it away or "
        "delete it to start an empty one (its answers will be asked for again)"
    )


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


def is_ours(db: sqlite3.Connection, tables: list[str]) -> bool:
    """A request cache: `_migrations` names our first migration, or only our tables are there
    (a file some process is creating right now)."""
    if "_migrations" in tables:
        try:
            first = MIGRATIONS[0][0]
            row = db.execute("SELECT 1 FROM _migrations WHERE name = ?", (first,)).fetchone()
            return row is not None
        except sqlite3.Error:  # a `_migrations` of someone else's making
            return False
    return set(tables) <= {"responses", "batch_jobs", "batch_items", "response_hits"}


def check_cache(path: str | Path, busy_timeout_s: float | None = None) -> None:
    """Refuse, in one line and without writing to it, a file at `path` that is a SQLite database
    but not a request cache, or that another process holds locked. An absent or empty file, a
    cache, and a file that is not SQLite at all pass (opening the latter reports it)."""
    path = Path(path).expanduser()
    timeout = busy_timeout(60.0) if busy_timeout_s is None else busy_timeout_s
    refuse_foreign(path, "request cache", timeout, is_ours, damaged)


class RequestCache:
    """The cache at `path`; a file that is not ours is refused, read-only (sqlite_check.py).
    `busy_timeout_s`: seconds to wait for another process's lock ($GPT4LLM_BUSY_TIMEOUT).
    `writer`: take the write lock once on open, so a file held locked by another process is
    refused before any call is paid for, not when its answer cannot be stored."""

    def __init__(self, path: str | Path, busy_timeout_s: float | None = None, writer: bool = True):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise UserError(f"{self.path}: request cache path is a directory, expected a file")
        busy_timeout_s = busy_timeout(60.0) if busy_timeout_s is None else busy_timeout_s
        check_cache(self.path, busy_timeout_s)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; each put is one transaction.
            self.db = sqlite3.connect(
                str(self.path),
                timeout=busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._setup(busy_timeout_s)
            if writer:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("ROLLBACK")
        except sqlite3.OperationalError as e:  # permissions, a missing directory, locked
            if is_locked(e):
                raise locked(self.path, "request cache", busy_timeout_s) from None
            raise UserError(f"{self.path}: cannot open the request cache ({e})") from None
        except sqlite3.DatabaseError as e:  # not a database, or a damaged one
            raise damaged(self.path, e) from None
        except OSError as e:
            raise UserError(f"{self.path}: cannot open the request cache ({e})") from None
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()

    def _setup(self, busy_timeout_s: float) -> None:
        """WAL mode and migrations. Switching a new file to WAL takes an exclusive lock that
        SQLite reports as "database is locked" at once, without waiting on busy_timeout, when
        another process opens the same new file at the same moment: retry until the timeout."""
        deadline = time.monotonic() + busy_timeout_s
        delay = 0.01
        while True:
            try:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(0.2, delay * 2)

    def _migrate(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT"
            " NULL)"
        )
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
        """{key: (completion, cost)} for the keys present. A row that does not parse is a miss
        (its request is made again and the row replaced); a damaged file is a UserError."""
        out: dict[str, tuple[Completion, float]] = {}
        unique = list(dict.fromkeys(keys))
        with self._using("read"):
            for i in range(0, len(unique), 500):
                chunk = unique[i : i + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, completion, cost FROM responses WHERE key IN ({marks})"
                for key, comp, cost in self.db.execute(query, chunk):
                    try:
                        out[key] = (Completion.from_dict(json.loads(comp)), cost)
                    except (ValueError, KeyError, TypeError):
                        continue
        return out

    @contextmanager
    def _using(self, doing: str) -> Iterator[None]:
        """The connection, to one thread at a time; a lock held past the busy timeout, an I/O
        error or a damaged file becomes one line naming the file."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as e:
                if is_locked(e):
                    raise locked(self.path, "request cache", self.busy_timeout_s) from None
                raise UserError(f"{self.path}: cannot {doing} the request cache ({e})") from None
            except sqlite3.DatabaseError as e:
                raise damaged(self.path, e) from None

    def record_hits(self, keys: list[str]) -> None:
        """Count answers served from the cache (one per request). Best effort: a busy or
        read-only file loses the count, never the run."""
        rows = [(k, n, time.time()) for k, n in Counter(keys).items()]
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    self.db.executemany(
                        "INSERT INTO response_hits VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                        "SET hits = hits + excluded.hits, last_hit = excluded.last_hit",
                        rows,
                    )
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
            except sqlite3.Error:
                pass

    def put(
        self,
        key: str,
        identity: dict[str, Any],
        canonical: str,
        completion: Completion,
        cost: float,
    ) -> None:
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
            self.db.execute(
                "INSERT OR REPLACE INTO responses (key, backend, model, request, completion, "
                "prompt_tokens, completion_tokens, cost, created) VALUES (?,?,?,?,?,?,?,?,?)",
                row,
            )

    def count(self) -> int:
        with self._using("read"):
            return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # --- `gpt4llm cache stats | clear` ---------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Entries, bytes on disk (with the WAL) and, per model: entries, hits, tokens, the cost
        paid for the calls and the cost the hits saved (each hit would have paid it again)."""
        query = """SELECT r.model, COUNT(*), SUM(r.prompt_tokens), SUM(r.completion_tokens),
                          SUM(r.cost), COALESCE(SUM(h.hits), 0), COALESCE(SUM(h.hits * r.cost), 0),
                          MIN(r.created), MAX(r.created)
                   FROM responses r LEFT JOIN response_hits h ON h.key = r.key
                   GROUP BY r.model ORDER BY COUNT(*) DESC, r.model"""
        with self._using("read"):
            rows = self.db.execute(query).fetchall()
        models = [
            {
                "model": m,
                "entries": n,
                "hits": hits,
                "prompt_tokens": pt or 0,
                "completion_tokens": ct or 0,
                "cost_paid_usd": round(paid or 0.0, 6),
                "cost_saved_usd": round(saved or 0.0, 6),
                "oldest": first,
                "newest": last,
            }
            for m, n, pt, ct, paid, hits, saved, first, last in rows
        ]
        size = sum(p.stat().st_size for p in self.files() if p.exists())
        entries = sum(m["entries"] for m in models)
        return {"path": str(self.path), "entries": entries, "bytes": size, "models": models}

    def files(self) -> list[Path]:
        return [self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))]

    def _where(self, older_than_s: float | None, model: str | None) -> tuple[str, list[Any]]:
        cond, args = [], []
        if older_than_s is not None:
            cond.append("created < ?")
            args.append(time.time() - older_than_s)
        if model is not None:
            cond.append("model = ?")
            args.append(model)
        return (" WHERE " + " AND ".join(cond)) if cond else "", args

    def count_matching(self, older_than_s: float | None = None, model: str | None = None) -> int:
        where, args = self._where(older_than_s, model)
        with self._using("read"):
            return self.db.execute(f"SELECT COUNT(*) FROM responses{where}", args).fetchone()[0]

    def clear(self, older_than_s: float | None = None, model: str | None = None) -> int:
        """Delete the matching answers (all when no filter) and their hit counts; then give the
        space back to the file system when no other process holds the file. Batch-mode state
        (submitted batches a run may still collect) is left alone."""
        where, args = self._where(older_than_s, model)
        with self._using("write"):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                n = self.db.execute(f"DELETE FROM responses{where}", args).rowcount
                self.db.execute(
                    "DELETE FROM response_hits WHERE key NOT IN (SELECT key FROM responses)"
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            try:
                self.db.execute("VACUUM")
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:  # another process has it open: space is reused later
                pass
        return n

    def close(self) -> None:
        with self._lock:
            self.db.close()
