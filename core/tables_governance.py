"""Tables for data governance (migration app/migrations/versions/0008_governance.py).

No table holds a raw PII value in clear: the vault keeps tokenized values encrypted, and every
value (whatever the policy did with it) is findable only through a keyed hash (HMAC), so an
erasure request can be answered without decrypting anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from core.tables import Base, utcnow

__all__ = ["Base", "PiiOccurrence", "PiiVaultEntry", "TenantPiiPolicy"]


class TenantPiiPolicy(Base):
    """A tenant's PII policy (type -> keep / mask / tokenize); absent: the settings default."""

    __tablename__ = "tenant_pii_policies"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str] = mapped_column(String(256), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PiiVaultEntry(Base):
    """One tokenized value per tenant: its token, keyed hash and AES-GCM ciphertext."""

    __tablename__ = "pii_vault"
    __table_args__ = (Index("ix_pii_vault_hash", "tenant_id", "value_hmac", unique=True),)

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    token: Mapped[str] = mapped_column(String(96), primary_key=True)
    pii_type: Mapped[str] = mapped_column(String(16))
    value_hmac: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PiiOccurrence(Base):
    """Which document versions contain which value (by hash), how often, and what the policy
    did with it: per-document PII counts, and the index an erasure by data subject searches."""

    __tablename__ = "pii_occurrences"
    __table_args__ = (Index("ix_pii_occurrences_hash", "tenant_id", "value_hmac"),)

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    value_hmac: Mapped[str] = mapped_column(String(64), primary_key=True)
    pii_type: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    token: Mapped[str | None] = mapped_column(String(96), nullable=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
