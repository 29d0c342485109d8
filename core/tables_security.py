"""Tables for the security feature (migration app/migrations/versions/0005_security.py): key
rotation grace periods, key usage, and the per-tenant hash-chained audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.tables import Base, utcnow

__all__ = ["ApiKeyGrace", "ApiKeyUsage", "AuditEvent", "AuditHead", "Base"]


class ApiKeyGrace(Base):
    """A rotated key's previous secret, still accepted until `valid_until`."""

    __tablename__ = "api_key_grace"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyUsage(Base):
    """When a key was last used (written at most once a minute per key and process)."""

    __tablename__ = "api_key_usage"

    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """One audited action. Append-only: `hash` = sha256(canonical JSON of the event + prev_hash),
    and `prev_hash` is the previous event's hash in the same tenant (app/services/audit.py)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "seq", name="uq_audit_events_tenant_seq"),
        Index("ix_audit_events_tenant_ts", "tenant_id", "ts"),
        Index("ix_audit_events_tenant_action", "tenant_id", "action"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(Integer)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    principal: Mapped[str] = mapped_column(String(256))
    key_id: Mapped[str] = mapped_column(String(32), default="")
    role: Mapped[str] = mapped_column(String(16), default="")
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(64))
    targets: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    retrieved: Mapped[list[Any]] = mapped_column(JSON, default=list)
    cited: Mapped[list[Any]] = mapped_column(JSON, default=list)
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The last event of a tenant's chain. Appends lock this row (`SELECT ... FOR UPDATE` on
    PostgreSQL), so concurrent writers cannot fork the chain; it also reveals deleted tail events."""

    __tablename__ = "audit_heads"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))
