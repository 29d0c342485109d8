"""API keys: stored as SHA-256 hashes, shown once, the only source of a request's principal.

A key's lifecycle: created (`POST /v1/keys`), listed without secrets, changed (groups, role,
expiry), rotated (a new secret; the old one keeps working for an optional grace period) and
revoked (refused from the next request on). A tenant always keeps at least one usable admin key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from core.models import Permission, Principal, Role, UtcDateTime
from core.tables import ApiKey
from core.tables_security import ApiKeyGrace, ApiKeyUsage

KEY_PREFIX = "cairn_"
_NAME = re.compile(r"^[A-Za-z0-9._@+\-]{1,200}$")
# last_used_at is written at most this often per key and process: a write per request is not cheap
USAGE_WRITE_INTERVAL_S = 60.0
_UNSET = object()


class LastAdminKey(Conflict):
    code = "last_admin_key"


class KeyRevoked(Conflict):
    code = "key_revoked"


class KeyPublic(BaseModel):
    key_id: str
    user: str
    groups: list[str]
    role: Role
    created_at: UtcDateTime
    expires_at: UtcDateTime | None = None
    revoked_at: UtcDateTime | None = None
    last_used_at: UtcDateTime | None = None
    grace_until: UtcDateTime | None = None  # a rotated-out secret still works until then
    permissions: list[str] = []


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
        # serializes the "is this the last admin key?" check with the change it guards (SQLite;
        # PostgreSQL also locks the tenant's admin rows)
        self._admin_lock = threading.Lock()
        self._usage_written: dict[str, float] = {}

    def create(
        self,
        tenant_id: str,
        user: str,
        groups: list[str],
        role: Role,
        expires_at: datetime | None = None,
        key: str | None = None,
        permissions: list[Permission] | None = None,
    ) -> tuple[str, str]:
        """Returns (key_id, key). The key itself is not stored and cannot be shown again."""
        validate_name("user", user)
        for g in groups:
            validate_name("group", g)
        _check_future(expires_at)
        key = key or KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(
            id=secrets.token_hex(8),
            tenant_id=tenant_id,
            user=user,
            groups=sorted(set(groups)),
            role=role.value,
            key_hash=hash_key(key),
            expires_at=expires_at,
            permissions=sorted(set(permissions or [])),
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
        digest = hash_key(key)
        now = datetime.now(UTC)
        with self._sessions() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
            if row is None:  # a rotated-out secret inside its grace period
                grace = s.scalar(select(ApiKeyGrace).where(ApiKeyGrace.key_hash == digest))
                if grace is not None and _aware(grace.valid_until) > now:
                    row = s.get(ApiKey, grace.key_id)
        if row is None or row.revoked_at is not None:
            raise Unauthenticated("invalid or revoked API key")
        if row.expires_at is not None and _aware(row.expires_at) <= now:
            raise Unauthenticated("API key has expired")
        self._touch(row.id, now)
        return Principal(
            tenant_id=row.tenant_id, user=row.user, groups=tuple(row.groups), role=Role(row.role), key_id=row.id,
            permissions=tuple(row.permissions or ()),
        )

    def _touch(self, key_id: str, now: datetime) -> None:
        last = self._usage_written.get(key_id)
        if last is not None and time.monotonic() - last < USAGE_WRITE_INTERVAL_S:
            return
        self._usage_written[key_id] = time.monotonic()
        try:
            with self._sessions.begin() as s:
                usage = s.get(ApiKeyUsage, key_id)
                if usage is None:
                    s.add(ApiKeyUsage(key_id=key_id, last_used_at=now))
                else:
                    usage.last_used_at = now
        except IntegrityError:  # another process wrote the first row at the same moment
            pass

    def tenants(self) -> dict[str, tuple[int, int]]:
        """Tenant id -> (keys, usable admin keys). Tenants exist as named on keys."""
        now = datetime.now(UTC)
        out: dict[str, tuple[int, int]] = {}
        with self._sessions() as s:
            for row in s.scalars(select(ApiKey)):
                keys, admins = out.get(row.tenant_id, (0, 0))
                out[row.tenant_id] = (keys + 1, admins + int(_usable(row, now) and row.role == Role.admin.value))
        return out

    # ---- administration (always within one tenant) -------------------------------------------

    def list_keys(self, tenant_id: str) -> list[KeyPublic]:
        with self._sessions() as s:
            rows = s.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)).all()
            ids = [r.id for r in rows]
            used = dict(s.execute(select(ApiKeyUsage.key_id, ApiKeyUsage.last_used_at)
                                  .where(ApiKeyUsage.key_id.in_(ids))).tuples().all())
            graces = self._grace_until(s, ids)
        return [_public(r, used.get(r.id), graces.get(r.id)) for r in rows]

    def get(self, tenant_id: str, key_id: str) -> KeyPublic:
        with self._sessions() as s:
            row = self._row(s, tenant_id, key_id)
            usage = s.get(ApiKeyUsage, key_id)
            grace = self._grace_until(s, [key_id]).get(key_id)
        return _public(row, usage.last_used_at if usage else None, grace)

    def revoke(self, tenant_id: str, key_id: str) -> KeyPublic:
        """Idempotent. Refused (409 last_admin_key) for the tenant's last usable admin key."""
        with self._admin_lock, self._sessions.begin() as s:
            row = self._row(s, tenant_id, key_id)
            if row.revoked_at is None:
                self._keep_an_admin(s, row, role_after=None)
                row.revoked_at = datetime.now(UTC)
                s.execute(delete(ApiKeyGrace).where(ApiKeyGrace.key_id == key_id))
        return self.get(tenant_id, key_id)

    def rotate(self, tenant_id: str, key_id: str, grace_s: int = 0) -> tuple[KeyPublic, str]:
        """A new secret for the same key (id, user, groups, role, limits stay). The old secret is
        refused at once, or after `grace_s` seconds so clients can switch over; secrets rotated
        out earlier stop then too (never later than the newest grace)."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self._sessions.begin() as s:
            row = self._row(s, tenant_id, key_id)
            if row.revoked_at is not None:
                raise KeyRevoked(f"key {key_id} is revoked; create a new key instead", key_id=key_id)
            if grace_s > 0:
                # earlier rotated-out secrets never outlive this grace: "rotate now, 60 s grace"
                # after a leak ends every older secret within 60 s too
                until = now + timedelta(seconds=grace_s)
                s.execute(delete(ApiKeyGrace).where(ApiKeyGrace.key_id == key_id, ApiKeyGrace.valid_until <= now))
                s.execute(update(ApiKeyGrace).where(ApiKeyGrace.key_id == key_id, ApiKeyGrace.valid_until > until)
                          .values(valid_until=until))
                s.add(ApiKeyGrace(key_hash=row.key_hash, key_id=key_id, valid_until=until))
            else:  # rotate now: every earlier secret of this key stops working too
                s.execute(delete(ApiKeyGrace).where(ApiKeyGrace.key_id == key_id))
            row.key_hash = hash_key(key)
        return self.get(tenant_id, key_id), key

    def update(
        self,
        tenant_id: str,
        key_id: str,
        *,
        groups: list[str] | None = None,
        role: Role | None = None,
        expires_at: datetime | None | object = _UNSET,
    ) -> KeyPublic:
        """Change groups, role or expiry (`expires_at=None` removes it). Takes effect on the
        key's next request."""
        for g in groups or []:
            validate_name("group", g)
        if isinstance(expires_at, datetime):
            _check_future(expires_at)
        with self._admin_lock, self._sessions.begin() as s:
            row = self._row(s, tenant_id, key_id)
            if row.revoked_at is not None:
                raise KeyRevoked(f"key {key_id} is revoked; create a new key instead", key_id=key_id)
            if role is not None and role is not Role.admin:
                self._keep_an_admin(s, row, role_after=role)
            elif isinstance(expires_at, datetime):  # an expiring last admin key is a lockout in waiting
                self._keep_an_admin(s, row, role_after=Role(row.role), what="set an expiry on")
            if groups is not None:
                row.groups = sorted(set(groups))
            if role is not None:
                row.role = role.value
            if expires_at is not _UNSET:
                row.expires_at = expires_at if isinstance(expires_at, datetime) else None
        return self.get(tenant_id, key_id)

    def _row(self, s: Session, tenant_id: str, key_id: str) -> ApiKey:
        row = s.get(ApiKey, key_id)
        if row is None or row.tenant_id != tenant_id:  # another tenant's key does not exist for you
            raise NotFound(f"no key {key_id!r} in this tenant")
        return row

    def _keep_an_admin(self, s: Session, row: ApiKey, role_after: Role | None, what: str | None = None) -> None:
        """Refuses a change that would leave the tenant without a usable admin key."""
        if row.role != Role.admin.value:
            return
        now = datetime.now(UTC)
        admins = s.scalars(
            select(ApiKey)
            .where(ApiKey.tenant_id == row.tenant_id, ApiKey.role == Role.admin.value, ApiKey.revoked_at.is_(None))
            .with_for_update()
        ).all()
        others = [a for a in admins if a.id != row.id and _usable(a, now)]
        if not others:
            what = what or ("revoke" if role_after is None else "demote")
            raise LastAdminKey(
                f"cannot {what} the tenant's last admin key; create another admin key first", key_id=row.id
            )

    @staticmethod
    def _grace_until(s: Session, key_ids: list[str]) -> dict[str, datetime]:
        now = datetime.now(UTC)
        out: dict[str, datetime] = {}
        for key_id, until in s.execute(
            select(ApiKeyGrace.key_id, ApiKeyGrace.valid_until).where(ApiKeyGrace.key_id.in_(key_ids))
        ).tuples():
            until = _aware(until)
            if until > now and (key_id not in out or until > out[key_id]):
                out[key_id] = until
        return out


def _public(row: ApiKey, last_used_at: datetime | None, grace_until: datetime | None) -> KeyPublic:
    return KeyPublic(
        key_id=row.id, user=row.user, groups=list(row.groups), role=Role(row.role), created_at=row.created_at,
        expires_at=row.expires_at, revoked_at=row.revoked_at, last_used_at=last_used_at, grace_until=grace_until,
        permissions=list(row.permissions or []),
    )


def _usable(row: ApiKey, now: datetime) -> bool:
    """Not revoked and not expired: a key that authenticates now."""
    return row.revoked_at is None and (row.expires_at is None or _aware(row.expires_at) > now)


def _check_future(expires_at: datetime | None) -> None:
    if expires_at is not None and _aware(expires_at) <= datetime.now(UTC):
        raise InvalidInput("expires_at is in the past; give a future time (ISO 8601, UTC)", field="expires_at")


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
