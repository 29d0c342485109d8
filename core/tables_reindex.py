"""Tables for index operations: which collection generation serves reads (the alias) and one
row per reindex run (migration app/migrations/versions/0007_reindex.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.tables import Base, utcnow


class IndexAlias(Base):
    """The alias readers and writers use, and the generation behind it. `previous` is kept,
    open and untouched, for a rollback until an explicit cleanup drops it."""

    __tablename__ = "index_aliases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    target: Mapped[str] = mapped_column(String(256))
    previous: Mapped[str | None] = mapped_column(String(256), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReindexRun(Base):
    """A rebuild of the whole collection into a new generation; `id` is also its job's id."""

    __tablename__ = "reindex_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    alias: Mapped[str] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(256), nullable=True)  # generation it replaces
    target: Mapped[str | None] = mapped_column(String(256), nullable=True)  # generation it builds
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|swapped|failed
    total_docs: Mapped[int] = mapped_column(Integer, default=0)
    done_docs: Mapped[int] = mapped_column(Integer, default=0)
    failed_docs: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
