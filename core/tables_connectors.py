"""SQL tables for connectors: their configuration, what each one has seen of its source, and
one row per sync with its counts, so a sync is never a black box ("195 of 6,500, no error")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.tables import Base, utcnow


class ConnectorRow(Base):
    __tablename__ = "connectors"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_connectors_tenant_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # secrets included; never returned
    acl_default: Mapped[list[str]] = mapped_column(JSON, default=list)
    interval_s: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: manual syncs only
    # connector writes run as the owner (an editor or admin at creation time)
    owner: Mapped[str] = mapped_column(String(256))
    owner_groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner_role: Mapped[str] = mapped_column(String(16))
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConnectorItem(Base):
    """One source item as last seen. `content_hash` is the item's fingerprint (text, title,
    tags, metadata); with `acl` it decides whether a sync may skip the item."""

    __tablename__ = "connector_items"

    connector_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("connectors.id", ondelete="CASCADE"), primary_key=True
    )
    external_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(256))
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    acl: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | indexed | failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConnectorSync(Base):
    """One sync run; its id is also its row in `jobs` (kind `sync`)."""

    __tablename__ = "connector_syncs"
    __table_args__ = (Index("ix_connector_syncs_connector", "connector_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    connector_id: Mapped[str] = mapped_column(String(32), ForeignKey("connectors.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | schedule
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|partial|failed
    seen: Mapped[int] = mapped_column(Integer, default=0)
    indexed: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{external_id, reason}], capped
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why the sync itself failed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
