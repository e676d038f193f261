"""The study's database: engines for SQLite and PostgreSQL, and the transactional operations
the web app and the CLI share (claim a pair, record a vote) on the tables of `tables.py`.

One study per database (SQLite file) or per schema (PostgreSQL: `gpt4llm_<study id>`, selected
through SQLAlchemy's `schema_translate_map`, so many studies can share one server).

Votes are never lost: every submission is one transaction; concurrent writers on SQLite take
the write lock up front (`BEGIN IMMEDIATE`, WAL, busy timeout) so no transaction fails half-way
on a lock upgrade; on PostgreSQL the row updates are guarded by their WHERE clauses and unique
constraints. A vote carries a `version`; a submission names the version it saw, so a replayed or
stale form is rejected (409) instead of silently overwriting a newer answer.

The database holds no secret that could sign a session: the signing key lives in a file beside
it (see `study.store.session_secret`), web sessions are rows keyed by the SHA-256 of their id (so
signing out ends them), and tokens are stored hashed. The SQLite file is created 0600 (SQLite
gives its -wal and -shm files the same mode) and opened with `mode=rw`, so SQLite never
re-creates a deleted database empty; every transaction first checks that the file it opened is
still the one at that path (`DatabaseGone` otherwise), so no vote is written into a deleted file.
A SQLite file that is not a study database is refused before it is opened for writing, read-only
and in one line (never switched to WAL nor given our tables: sqlite_check.py); so is one another
process holds locked past the timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, delete, event, func, select, text, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from gpt4llm.errors import UserError
from gpt4llm.evaluate.human.tables import (
    SCHEMA_VERSION,
    Annotator,
    Assignment,
    Base,
    Item,
    Meta,
    Pair,
    Vote,
    VoteEvent,
    WebSession,
    utcnow,
)
from gpt4llm.sqlite_check import busy_timeout, is_locked, locked, refuse_foreign


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe one-way store."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class DatabaseGone(Exception):
    """The SQLite file was deleted or replaced under a running app (never re-created empty)."""


# --- engines -------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    u = make_url(url)
    return u.render_as_string(hide_password=True) if u.password else url


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///FILE` URL (None for other databases and in-memory SQLite)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    if u.database.startswith("file:"):
        return None  # already a URI: the user chose its flags
    return Path(u.database)


def make_engine(
    url: str | URL,
    schema: str | None = None,
    timeout: float = 60.0,
    check: Callable[[], None] | None = None,
) -> Engine:
    """SQLite: WAL, busy timeout, foreign keys, secure_delete, `BEGIN IMMEDIATE` for write
    sessions; `check()` runs before every BEGIN and COMMIT. PostgreSQL (psycopg 3): the
    study's schema via schema_translate_map. `timeout`: seconds to wait for a lock (SQLite) or
    a connection (PostgreSQL) before the operation fails."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        engine = create_engine(
            u,
            connect_args={"timeout": timeout, "check_same_thread": False},
            pool_size=20,
            max_overflow=40,
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA secure_delete=ON")  # deleted rows (sessions) leave no trace
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # pragma: no cover
            if check is not None:
                check()
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        if check is not None:
            event.listen(engine, "commit", lambda _conn: check())
        return engine
    if u.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": max(1, round(timeout))}
        engine = create_engine(
            u, pool_size=20, max_overflow=40, pool_pre_ping=True, connect_args=connect_args
        )
        if schema:
            engine = engine.execution_options(schema_translate_map={None: schema})
        return engine
    raise ValueError(
        f"unsupported database URL {redact_url(str(url))!r}: "
        "use sqlite:///FILE or postgresql+psycopg://..."
    )


def create_private_file(path: Path) -> None:
    """Create an empty file readable by its owner only (0600); fail if it exists."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _tighten(db: Path) -> None:
    """Make an older study's database (and its -wal/-shm) readable by its owner only."""
    for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        try:
            if f.stat().st_mode & 0o077:
                os.chmod(f, 0o600)
        except OSError:  # absent, or not ours to change: leave it
            pass


def _is_study(db: sqlite3.Connection, tables: list[str]) -> bool:
    """A study database: its `meta` names a study, or only our tables are there (a study being
    created, or of an older schema version)."""
    if set(tables) <= set(Base.metadata.tables):
        return True
    if "meta" not in tables:
        return False
    try:
        return db.execute("SELECT 1 FROM meta WHERE key = 'study_id'").fetchone() is not None
    except sqlite3.Error:  # a `meta` of someone else's making
        return False


def _first_unvoted(annotator_id: int):
    """The annotator's first assigned pair without their vote (a select)."""
    return (
        select(Assignment.pair_id)
        .outerjoin(
            Vote,
            (Vote.pair_id == Assignment.pair_id) & (Vote.annotator_id == Assignment.annotator_id),
        )
        .where(Assignment.annotator_id == annotator_id, Vote.id.is_(None))
        .order_by(Assignment.seq)
        .limit(1)
    )


class Store:
    """The database of one study: sessions for reading and for writing.

    SQLite: `create=True` makes the file (0600) if it does not exist; otherwise it must exist,
    else `DatabaseGone`. Either way a file that is not a study database is refused read-only
    first (sqlite_check.py), then it is opened with `mode=rw` and watched for deletion.
    `timeout`: seconds to wait for a lock (default $GPT4LLM_BUSY_TIMEOUT, else 60)."""

    def __init__(
        self,
        url: str,
        schema: str | None = None,
        timeout: float | None = None,
        create: bool = False,
    ):
        timeout = busy_timeout(60.0) if timeout is None else timeout
        self.timeout = timeout
        self.url = url
        self.schema = schema
        self.path = sqlite_path(url)
        self._ident: tuple[int, int] | None = None
        check = None
        engine_url: str | URL = url
        if self.path is not None:
            if create and not self.path.exists():
                try:
                    create_private_file(self.path)
                except FileExistsError:  # created meanwhile: open that one
                    pass
            elif not self.path.exists():
                raise DatabaseGone(f"{self.path} does not exist")
            refuse_foreign(self.path, "study database", timeout, _is_study)
            _tighten(self.path)
            st = self.path.stat()
            self._ident = (st.st_dev, st.st_ino)
            engine_url = make_url(url).set(
                database=f"file:{quote(str(self.path.absolute()))}",
                query={**make_url(url).query, "mode": "rw", "uri": "true"},
            )
            check = self.check_file
        self.engine = make_engine(engine_url, schema, timeout=timeout, check=check)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = self.engine
        if self.is_sqlite:
            writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self.read = sessionmaker(self.engine, expire_on_commit=False)
        self.write = sessionmaker(writer, expire_on_commit=False)

    def lock_error(self, error: Exception) -> UserError | None:
        """A SQLite lock held by another process past the timeout, as one line naming the file
        and the holder (None for any other error)."""
        orig = getattr(error, "orig", error)
        if self.path is not None and isinstance(orig, sqlite3.Error) and is_locked(orig):
            return locked(self.path, "study database", self.timeout)
        return None

    def check_file(self) -> None:
        """Raise DatabaseGone if the SQLite file was deleted or replaced since it was opened
        (a pooled connection would otherwise keep writing into the deleted file)."""
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise DatabaseGone(f"{self.path} was deleted") from None
        if (st.st_dev, st.st_ino) != self._ident:
            raise DatabaseGone(f"{self.path} was replaced by another file")

    def create(self) -> None:
        if self.schema and not self.is_sqlite:
            with self.engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        Base.metadata.create_all(self.engine)

    def migrate(self) -> bool:
        """Bring a database of an older schema version up to SCHEMA_VERSION. Returns whether
        anything changed. Version 1 kept the session-signing secret in `meta`: it is deleted
        (and scrubbed from the SQLite file and its WAL); the app signs with a new secret from
        a file, and sessions become server-side rows, so every old cookie stops working."""
        version = int(self.get_meta("schema_version", "0") or 0)
        if version >= SCHEMA_VERSION:
            return False
        if version != 1:
            raise ValueError(f"cannot upgrade a study database of schema version {version}")
        Base.metadata.create_all(self.engine)  # adds web_sessions
        with self.write() as s, s.begin():
            s.execute(delete(Meta).where(Meta.key == "session_secret"))
            s.execute(
                update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION))
            )
        if self.is_sqlite:
            raw = self.engine.raw_connection()
            try:  # the deleted row's old page images live on in the WAL until truncated
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        return True

    def drop_schema(self) -> None:
        """PostgreSQL only: remove the study's schema (used by tests and `init --force`)."""
        if self.schema and not self.is_sqlite:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    def dispose(self) -> None:
        self.engine.dispose()

    # --- meta ---
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.read() as s:
            row = s.get(Meta, key)
            return row.value if row else default

    def meta(self) -> dict[str, str]:
        with self.read() as s:
            return {m.key: m.value for m in s.scalars(select(Meta))}

    # --- web sessions ---
    def open_session(
        self, sid: str, max_age: int, annotator_id: int | None = None, admin: bool = False
    ) -> None:
        """Record a signed-in session (only the hash of `sid`); drops expired ones."""
        now = utcnow()
        with self.write() as s, s.begin():
            s.execute(delete(WebSession).where(WebSession.expires_at <= now))
            s.add(
                WebSession(
                    id_hash=hash_token(sid),
                    annotator_id=annotator_id,
                    admin=admin,
                    created_at=now,
                    expires_at=now + timedelta(seconds=max_age),
                )
            )

    def session_principal(self, sid: str) -> tuple[bool, Annotator | None] | None:
        """(is admin, annotator) of a live session; None if signed out, expired or the
        annotator was deactivated."""
        with self.read() as s:
            row = s.get(WebSession, hash_token(sid))
            if row is None or row.expires_at <= utcnow():
                return None
            if row.admin:
                return True, None
            a = s.get(Annotator, row.annotator_id) if row.annotator_id is not None else None
            return (False, a) if a is not None and a.active else None

    def close_session(self, sid: str) -> None:
        with self.write() as s, s.begin():
            s.execute(delete(WebSession).where(WebSession.id_hash == hash_token(sid)))

    # --- annotators ---
    def add_annotator(self, name: str, token: str, quota: int | None = None) -> Annotator:
        with self.write() as s, s.begin():
            if s.scalar(select(Annotator).where(Annotator.name == name)):
                raise KeyError(name)
            a = Annotator(
                name=name,
                token_hash=hash_token(token),
                quota=quota,
                active=True,
                created_at=utcnow(),
            )
            s.add(a)
            s.flush()
            return a

    def annotator_by_token(self, token: str) -> Annotator | None:
        with self.read() as s:
            a = s.scalar(select(Annotator).where(Annotator.token_hash == hash_token(token)))
            return a if a and a.active else None

    def annotator(self, annotator_id: int) -> Annotator | None:
        with self.read() as s:
            a = s.get(Annotator, annotator_id)
            return a if a and a.active else None

    # --- assignment ---
    def next_pair(self, annotator_id: int, per_item: int) -> int | None:
        for attempt in range(5):
            try:
                return self._next_pair(annotator_id, per_item)
            except IntegrityError:  # the same annotator claimed concurrently (two tabs): retry
                if attempt == 4:
                    raise
        return None

    def _next_pair(self, annotator_id: int, per_item: int) -> int | None:
        """The annotator's first assigned pair without a vote, else claim a new one.

        Claiming prefers pairs that already have the most annotators (but fewer than
        `per_item`), so items fill up completely; the slot is taken by an atomic
        `UPDATE ... SET n_assigned = n_assigned + 1 WHERE n_assigned < per_item`, which can
        never over-assign a pair however many annotators claim at once.
        """
        with self.write() as s, s.begin():
            open_ = s.scalar(_first_unvoted(annotator_id))
            if open_ is not None:
                return open_
            ann = s.get(Annotator, annotator_id)
            n_mine = (
                s.scalar(
                    select(func.count())
                    .select_from(Assignment)
                    .where(Assignment.annotator_id == annotator_id)
                )
                or 0
            )
            if ann is None or (ann.quota is not None and n_mine >= ann.quota):
                return None
            mine = select(Assignment.pair_id).where(Assignment.annotator_id == annotator_id)
            # PostgreSQL: lock the candidate row, skipping rows other claimants hold, so 50
            # annotators claiming at once do not all queue on (and then lose) the same pair.
            # SQLite: BEGIN IMMEDIATE already serialises writers; FOR UPDATE is not rendered.
            candidate = (
                select(Pair.id)
                .where(Pair.n_assigned < per_item, Pair.id.not_in(mine))
                .order_by(Pair.n_assigned.desc(), Pair.rank)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            for _ in range(1000):
                pid = s.scalar(candidate)
                if pid is None:
                    return None
                res = s.execute(
                    update(Pair)
                    .where(Pair.id == pid, Pair.n_assigned < per_item)
                    .values(n_assigned=Pair.n_assigned + 1)
                )
                if res.rowcount == 1:
                    s.add(
                        Assignment(
                            annotator_id=annotator_id,
                            pair_id=pid,
                            seq=n_mine + 1,
                            created_at=utcnow(),
                        )
                    )
                    return pid
            raise RuntimeError("could not claim a pair after 1000 attempts")

    # --- what the pages show ---
    def progress(self, annotator: Annotator, per_item: int) -> dict[str, int]:
        """Pairs voted, and how many this annotator can still get (theirs + free slots)."""
        mine = Assignment.annotator_id == annotator.id
        count = select(func.count())
        with self.read() as s:
            done = s.scalar(count.select_from(Vote).where(Vote.annotator_id == annotator.id))
            n_mine = s.scalar(count.select_from(Assignment).where(mine))
            not_mine = Pair.id.not_in(select(Assignment.pair_id).where(mine))
            free = s.scalar(count.select_from(Pair).where(Pair.n_assigned < per_item, not_mine))
        total = (n_mine or 0) + (free or 0)
        if annotator.quota is not None:
            total = min(total, annotator.quota)
        return {"done": done or 0, "total": max(total, done or 0)}

    def my_pairs(self, annotator_id: int) -> list[dict]:
        """The annotator's pairs in the order received, with whether each is voted."""
        voted = (Vote.pair_id == Assignment.pair_id) & (
            Vote.annotator_id == Assignment.annotator_id
        )
        with self.read() as s:
            rows = s.execute(
                select(
                    Assignment.seq,
                    Assignment.pair_id,
                    Vote.version,
                    Vote.updated_at,
                    Item.instruction,
                )
                .join(Pair, Pair.id == Assignment.pair_id)
                .join(Item, Item.id == Pair.item_id)
                .outerjoin(Vote, voted)
                .where(Assignment.annotator_id == annotator_id)
                .order_by(Assignment.seq)
            ).all()
        return [
            {
                "seq": r[0],
                "pair_id": r[1],
                "voted": r[2] is not None,
                "updated_at": r[3],
                "instruction": r[4],
            }
            for r in rows
        ]

    def pair_view(self, annotator_id: int, pair_id: int) -> dict | None:
        """What the pair page shows; None unless the pair is assigned to the annotator."""
        mine = Assignment.annotator_id == annotator_id
        with self.read() as s:
            seq = s.scalar(select(Assignment.seq).where(mine, Assignment.pair_id == pair_id))
            if seq is None:
                return None
            pair = s.get(Pair, pair_id)
            item = s.get(Item, pair.item_id)
            vote = s.scalar(
                select(Vote).where(Vote.annotator_id == annotator_id, Vote.pair_id == pair_id)
            )
            prev_id = s.scalar(
                select(Assignment.pair_id)
                .where(mine, Assignment.seq < seq)
                .order_by(Assignment.seq.desc())
                .limit(1)
            )
            next_id = s.scalar(
                select(Assignment.pair_id)
                .where(mine, Assignment.seq > seq)
                .order_by(Assignment.seq)
                .limit(1)
            )
        (_, left), (_, right) = pair.shown()
        return {
            "pair_id": pair_id,
            "number": seq,
            "instruction": item.instruction,
            "input": item.input,
            "left": left,
            "right": right,
            "choices": json.loads(vote.choices) if vote else {},
            "comment": vote.comment if vote else "",
            "version": vote.version if vote else 0,
            "prev_id": prev_id,
            "next_id": next_id,
        }

    def overview(self, per_item: int) -> dict[str, Any]:
        """The admin page's numbers: votes, complete pairs, and per annotator."""
        of_annotator = Vote.annotator_id == Annotator.id
        with self.read() as db:
            n_pairs = db.scalar(select(func.count()).select_from(Pair)) or 0
            n_votes = db.scalar(select(func.count()).select_from(Vote)) or 0
            n_events = db.scalar(select(func.count()).select_from(VoteEvent)) or 0
            vote_counts = (
                select(Vote.pair_id, func.count().label("n")).group_by(Vote.pair_id).subquery()
            )
            complete = (
                db.scalar(
                    select(func.count()).select_from(vote_counts).where(vote_counts.c.n >= per_item)
                )
                or 0
            )
            n_assigned = (
                select(func.count())
                .select_from(Assignment)
                .where(Assignment.annotator_id == Annotator.id)
            )
            rows = db.execute(
                select(
                    Annotator.name,
                    Annotator.quota,
                    Annotator.active,
                    n_assigned.scalar_subquery(),
                    select(func.count()).select_from(Vote).where(of_annotator).scalar_subquery(),
                    select(func.max(Vote.updated_at)).where(of_annotator).scalar_subquery(),
                ).order_by(Annotator.name)
            ).all()
        annotators = [
            {
                "name": r[0],
                "quota": r[1],
                "active": r[2],
                "assigned": r[3],
                "voted": r[4],
                "last": r[5],
            }
            for r in rows
        ]
        return {
            "n_pairs": n_pairs,
            "n_votes": n_votes,
            "n_events": n_events,
            "needed": n_pairs * per_item,
            "complete": complete,
            "annotators": annotators,
        }

    def record_vote(
        self,
        annotator_id: int,
        pair_id: int,
        choices: dict[str, str],
        comment: str,
        seen_version: int,
    ) -> int:
        """Insert or change a vote in one transaction. `seen_version` is the vote's version the
        form was rendered with (0 = no vote yet). Returns the new version.

        Raises LookupError if the pair is not assigned to the annotator, and StaleVote if the
        vote changed since (a replayed or double-submitted form)."""
        # the same in the vote and its audit event
        whose = {"annotator_id": annotator_id, "pair_id": pair_id}
        said = {"choices": json.dumps(choices, sort_keys=True), "comment": comment}
        now = utcnow()
        try:
            with self.write() as s, s.begin():
                assigned = s.scalar(
                    select(Assignment.id).where(
                        Assignment.annotator_id == annotator_id, Assignment.pair_id == pair_id
                    )
                )
                if assigned is None:
                    raise LookupError(pair_id)
                if seen_version == 0:
                    s.add(Vote(**whose, **said, version=1, created_at=now, updated_at=now))
                    s.flush()  # a concurrent duplicate fails here on the unique constraint
                    new_version = 1
                else:
                    res = s.execute(
                        update(Vote)
                        .where(
                            Vote.annotator_id == annotator_id,
                            Vote.pair_id == pair_id,
                            Vote.version == seen_version,
                        )
                        .values(**said, version=Vote.version + 1, updated_at=now)
                    )
                    if res.rowcount != 1:
                        raise StaleVote(pair_id)
                    new_version = seen_version + 1
                s.add(VoteEvent(**whose, **said, version=new_version, created_at=now))
                return new_version
        except IntegrityError:
            raise StaleVote(pair_id) from None


class StaleVote(Exception):
    """The submission was made against an older version of the vote (replay / double submit)."""
