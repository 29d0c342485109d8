"""API keys: stored as SHA-256 hashes, shown once, the only source of a request's principal."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import InvalidInput, Unauthenticated
from core.models import Principal, Role
from core.tables import ApiKey

KEY_PREFIX = "cairn_"
_NAME = re.compile(r"^[A-Za-z0-9._@+\-]{1,200}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_name(kind: str, value: str) -> str:
    """User and group names end up inside ACL strings (`user:x`), so they are kept plain."""
    if not _NAME.match(value):
        raise InvalidInput(
            f"{kind} {value!r} is not valid: use 1-200 letters, digits or . _ @ + -", field=kind
        )
    return value


class KeyStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(
        self,
        tenant_id: str,
        user: str,
        groups: list[str],
        role: Role,
        expires_at: datetime | None = None,
        key: str | None = None,
    ) -> tuple[str, str]:
        """Returns (key_id, key). The key itself is not stored and cannot be shown again."""
        validate_name("user", user)
        for g in groups:
            validate_name("group", g)
        key = key or KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(
            id=secrets.token_hex(8),
            tenant_id=tenant_id,
            user=user,
            groups=sorted(set(groups)),
            role=role.value,
            key_hash=hash_key(key),
            expires_at=expires_at,
        )
        with self._sessions.begin() as s:
            s.add(row)
        return row.id, key

    def has_key(self, key: str) -> bool:
        with self._sessions() as s:
            return s.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))) is not None

    def has_admin(self, tenant_id: str) -> bool:
        with self._sessions() as s:
            q = select(ApiKey.id).where(
                ApiKey.tenant_id == tenant_id, ApiKey.role == Role.admin.value, ApiKey.revoked_at.is_(None)
            )
            return s.scalar(q.limit(1)) is not None

    def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        with self._sessions() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
        if row is None or row.revoked_at is not None:
            raise Unauthenticated("invalid or revoked API key")
        if row.expires_at is not None and _aware(row.expires_at) <= datetime.now(UTC):
            raise Unauthenticated("API key has expired")
        return Principal(
            tenant_id=row.tenant_id, user=row.user, groups=tuple(row.groups), role=Role(row.role), key_id=row.id
        )


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
