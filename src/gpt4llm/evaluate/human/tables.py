"""The study's tables (SQLAlchemy 2.x declarative models) and their schema version.

Items are the instructions; a pair is two models' answers to one item, in the study's canonical
order, with `swapped` saying which one is shown on the left. Annotators and web sessions are
stored by the SHA-256 of their token or id only. A vote is one row per annotator and pair,
versioned, with every accepted submission also appended to `vote_events`. The operations on
them (claim a pair, record a vote) are `db.Store`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

SCHEMA_VERSION = 2  # 2: web_sessions table; the session secret left the database
CHOICES = ("left", "tie", "right")  # what the annotator saw: answer A (left), tie, answer B (right)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value settings: study id, schema version, admin token hash, criteria, per_item."""

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


class _OnePerAnnotatorPair:
    """The key columns of a table with at most one row per annotator and pair (first in the
    table: sort_order -1)."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (UniqueConstraint("annotator_id", "pair_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, sort_order=-1)
    annotator_id: Mapped[int] = mapped_column(
        ForeignKey("annotators.id"), index=True, sort_order=-1
    )
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), index=True, sort_order=-1)


class Assignment(_OnePerAnnotatorPair, Base):
    """A pair handed to an annotator; `seq` is the order they received it in."""

    __tablename__ = "assignments"
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Vote(_OnePerAnnotatorPair, Base):
    """An annotator's current judgement of one pair: {criterion key: left|tie|right}."""

    __tablename__ = "votes"
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


class WebSession(Base):
    """A signed-in browser: the cookie carries the id, the table only its SHA-256. Signing out
    deletes the row, so a copied cookie stops working at once."""

    __tablename__ = "web_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    annotator_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotators.id"), nullable=True, index=True
    )
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
