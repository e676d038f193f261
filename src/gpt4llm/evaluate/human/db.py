"""The study's database: SQLAlchemy 2.x models, engines for SQLite and PostgreSQL, and the
transactional operations the web app and the CLI share (claim a pair, record a vote).

One study per database (SQLite file) or per schema (PostgreSQL: `gpt4llm_<study id>`, selected
through SQLAlchemy's `schema_translate_map`, so many studies can share one server).

Votes are never lost: every submission is one transaction; concurrent writers on SQLite take
the write lock up front (`BEGIN IMMEDIATE`, WAL, busy timeout) so no transaction fails half-way
on a lock upgrade; on PostgreSQL the row updates are guarded by their WHERE clauses and unique
constraints. A vote carries a `version`; a submission names the version it saw, so a replayed or
stale form is rejected (409) instead of silently overwriting a newer answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

SCHEMA_VERSION = 1
CHOICES = ("left", "tie", "right")  # what the annotator saw: answer A (left), tie, answer B (right)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe one-way store."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value settings: study id, schema version, session secret, admin token hash, criteria."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Item(Base):
    """One instruction (with its input) that the models answered."""

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # the records' id
    instruction: Mapped[str] = mapped_column(Text)
    input: Mapped[str] = mapped_column(Text, default="")


class Pair(Base):
    """Two models' answers to one item; `model_a`/`model_b` in the study's canonical order,
    `swapped` says whether model_b is shown on the left (randomised per pair, seeded)."""

    __tablename__ = "pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    model_a: Mapped[str] = mapped_column(String(255))
    model_b: Mapped[str] = mapped_column(String(255))
    output_a: Mapped[str] = mapped_column(Text)
    output_b: Mapped[str] = mapped_column(Text)
    swapped: Mapped[bool] = mapped_column(Boolean)
    rank: Mapped[int] = mapped_column(Integer, index=True)  # seeded random order of serving
    n_assigned: Mapped[int] = mapped_column(Integer, default=0)

    def shown(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """((model, text) on the left, (model, text) on the right)."""
        a, b = (self.model_a, self.output_a), (self.model_b, self.output_b)
        return (b, a) if self.swapped else (a, b)

    def winner(self, choice: str) -> str:
        """Map a shown choice (left/tie/right) to 'a', 'tie' or 'b' in canonical order."""
        if choice == "tie":
            return "tie"
        left_is_a = not self.swapped
        return "a" if (choice == "left") == left_is_a else "b"


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Assignment(Base):
    """A pair handed to an annotator; `seq` is the order they received it in."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("annotator_id", "pair_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Vote(Base):
    """An annotator's current judgement of one pair: {criterion key: left|tie|right}."""

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("annotator_id", "pair_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), index=True)
    choices: Mapped[str] = mapped_column(Text)  # JSON object
    comment: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class VoteEvent(Base):
    """Append-only audit log: every accepted submission, including changes."""

    __tablename__ = "vote_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"))
    version: Mapped[int] = mapped_column(Integer)
    choices: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# --- engines -------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    u = make_url(url)
    return u.render_as_string(hide_password=True) if u.password else url


def make_engine(url: str, schema: str | None = None) -> Engine:
    """SQLite: WAL, busy timeout, foreign keys, `BEGIN IMMEDIATE` for write sessions.
    PostgreSQL (psycopg 3): the study's schema via schema_translate_map."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=20, max_overflow=40)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # pragma: no cover
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if u.get_backend_name() == "postgresql":
        engine = create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)
        if schema:
            engine = engine.execution_options(schema_translate_map={None: schema})
        return engine
    raise ValueError(f"unsupported database URL {redact_url(url)!r}: use sqlite:///FILE or postgresql+psycopg://...")


class Store:
    """The database of one study: sessions for reading and for writing."""

    def __init__(self, url: str, schema: str | None = None):
        self.url = url
        self.schema = schema
        self.engine = make_engine(url, schema)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else self.engine
        self.read = sessionmaker(self.engine, expire_on_commit=False)
        self.write = sessionmaker(writer, expire_on_commit=False)

    def create(self) -> None:
        if self.schema and not self.is_sqlite:
            with self.engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        Base.metadata.create_all(self.engine)

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

    # --- annotators ---
    def add_annotator(self, name: str, token: str, quota: int | None = None) -> Annotator:
        with self.write() as s, s.begin():
            if s.scalar(select(Annotator).where(Annotator.name == name)):
                raise KeyError(name)
            a = Annotator(name=name, token_hash=hash_token(token), quota=quota, active=True, created_at=utcnow())
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
            open_ = s.scalar(
                select(Assignment.pair_id)
                .outerjoin(Vote, (Vote.pair_id == Assignment.pair_id) & (Vote.annotator_id == Assignment.annotator_id))
                .where(Assignment.annotator_id == annotator_id, Vote.id.is_(None))
                .order_by(Assignment.seq)
                .limit(1)
            )
            if open_ is not None:
                return open_
            ann = s.get(Annotator, annotator_id)
            n_mine = s.scalar(select(func.count()).select_from(Assignment).where(Assignment.annotator_id == annotator_id)) or 0
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
                    update(Pair).where(Pair.id == pid, Pair.n_assigned < per_item).values(n_assigned=Pair.n_assigned + 1)
                )
                if res.rowcount == 1:
                    s.add(Assignment(annotator_id=annotator_id, pair_id=pid, seq=n_mine + 1, created_at=utcnow()))
                    return pid
            raise RuntimeError("could not claim a pair after 1000 attempts")

    def is_assigned(self, annotator_id: int, pair_id: int) -> bool:
        with self.read() as s:
            return s.scalar(
                select(Assignment.id).where(Assignment.annotator_id == annotator_id, Assignment.pair_id == pair_id)
            ) is not None

    def record_vote(self, annotator_id: int, pair_id: int, choices: dict[str, str], comment: str, seen_version: int) -> int:
        """Insert or change a vote in one transaction. `seen_version` is the vote's version the
        form was rendered with (0 = no vote yet). Returns the new version.

        Raises LookupError if the pair is not assigned to the annotator, and StaleVote if the
        vote changed since (a replayed or double-submitted form)."""
        payload = json.dumps(choices, sort_keys=True)
        now = utcnow()
        try:
            with self.write() as s, s.begin():
                assigned = s.scalar(
                    select(Assignment.id).where(Assignment.annotator_id == annotator_id, Assignment.pair_id == pair_id)
                )
                if assigned is None:
                    raise LookupError(pair_id)
                if seen_version == 0:
                    s.add(Vote(annotator_id=annotator_id, pair_id=pair_id, choices=payload, comment=comment, version=1, created_at=now, updated_at=now))
                    s.flush()  # a concurrent duplicate fails here on the unique constraint
                    new_version = 1
                else:
                    res = s.execute(
                        update(Vote)
                        .where(Vote.annotator_id == annotator_id, Vote.pair_id == pair_id, Vote.version == seen_version)
                        .values(choices=payload, comment=comment, version=Vote.version + 1, updated_at=now)
                    )
                    if res.rowcount != 1:
                        raise StaleVote(pair_id)
                    new_version = seen_version + 1
                s.add(VoteEvent(annotator_id=annotator_id, pair_id=pair_id, version=new_version, choices=payload, comment=comment, created_at=now))
                return new_version
        except IntegrityError:
            raise StaleVote(pair_id) from None


class StaleVote(Exception):
    """The submission was made against an older version of the vote (replay / double submit)."""


def vote_choices(v: Vote) -> dict[str, str]:
    return json.loads(v.choices)


def to_jsonable(row: Any) -> dict:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}
