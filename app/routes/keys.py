"""API keys (admin only, always within the admin's own tenant): create, list, change, rotate,
revoke. A key of another tenant answers 404, exactly like a key that does not exist."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field

from app.auth import KeyPublic
from app.deps import AdminDep, ContainerDep, audited
from app.services.audit import AuditNote
from core.errors import InvalidInput
from core.models import Permission, Role

router = APIRouter(prefix="/v1/keys", tags=["keys"])
MAX_GRACE_S = 7 * 24 * 3600


class KeyCreate(BaseModel):
    user: str = Field(min_length=1, max_length=200)
    groups: list[str] = Field(default_factory=list, max_length=200)
    role: Role = Role.reader
    expires_at: datetime | None = None
    # "pii:read": answers show the original values behind PII tokens
    permissions: list[Permission] = Field(default_factory=list)


class KeyCreated(BaseModel):
    key: str
    key_id: str
    user: str
    groups: list[str]
    role: Role
    principals: list[str]
    permissions: list[Permission] = []


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


class KeyUpdate(BaseModel):
    """Only the fields sent change; `"expires_at": null` removes the expiry."""

    model_config = ConfigDict(extra="forbid")

    groups: list[str] | None = Field(default=None, max_length=200)
    role: Role | None = None
    expires_at: datetime | None = None


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_s: int = Field(default=0, ge=0, le=MAX_GRACE_S, description="the old secret keeps working this long")


class KeyRotated(BaseModel):
    key: str  # the new secret, shown only here
    key_id: str
    grace_until: datetime | None = None


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(
    body: KeyCreate, audit: Annotated[AuditNote, audited("key.create")], admin: AdminDep, container: ContainerDep
) -> KeyCreated:
    """Create an API key in the admin's tenant. The key is shown only in this response."""
    key_id, key = container.keys.create(
        admin.tenant_id, body.user, body.groups, body.role, body.expires_at, permissions=body.permissions
    )
    groups = sorted(set(body.groups))
    audit.target(key_id=key_id)
    audit.details.update(user=body.user, groups=groups, role=body.role.value,
                         permissions=sorted(set(body.permissions)))
    return KeyCreated(
        key=key, key_id=key_id, user=body.user, groups=groups, role=body.role,
        principals=[f"user:{body.user}", *(f"group:{g}" for g in groups)],
        permissions=sorted(set(body.permissions)),
    )


@router.get("", response_model=KeysPublic)
def list_keys(admin: AdminDep, container: ContainerDep) -> KeysPublic:
    """Every key of the tenant (revoked ones too), never a secret or its hash."""
    keys = container.keys.list_keys(admin.tenant_id)
    return KeysPublic(data=keys, count=len(keys))


@router.get("/{key_id}", response_model=KeyPublic)
def get_key(key_id: str, admin: AdminDep, container: ContainerDep) -> KeyPublic:
    return container.keys.get(admin.tenant_id, key_id)


@router.patch("/{key_id}", response_model=KeyPublic)
def update_key(
    key_id: str,
    body: KeyUpdate,
    audit: Annotated[AuditNote, audited("key.update")],
    admin: AdminDep,
    container: ContainerDep,
) -> KeyPublic:
    """Change groups, role or expiry; the key's next request sees the change. Demoting the
    tenant's last admin key is refused (409 `last_admin_key`)."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidInput("nothing to change: send groups, role and/or expires_at")
    audit.details.update(body.model_dump(mode="json", exclude_unset=True))
    return container.keys.update(admin.tenant_id, key_id, **changes)


@router.post("/{key_id}/rotate", response_model=KeyRotated)
def rotate_key(
    key_id: str,
    audit: Annotated[AuditNote, audited("key.rotate")],
    admin: AdminDep,
    container: ContainerDep,
    body: Annotated[KeyRotate | None, Body()] = None,
) -> KeyRotated:
    """A new secret for the same key (id, user, groups, role stay). The old secret stops
    working now, or after `grace_s` seconds (at most 7 days)."""
    grace_s = (body or KeyRotate()).grace_s
    audit.details.update(grace_s=grace_s)
    public, key = container.keys.rotate(admin.tenant_id, key_id, grace_s)
    return KeyRotated(key=key, key_id=key_id, grace_until=public.grace_until)


@router.delete("/{key_id}", status_code=204)
def revoke_key(
    key_id: str, audit: Annotated[AuditNote, audited("key.revoke")], admin: AdminDep, container: ContainerDep
) -> Response:
    """Revoke: the key (and any rotated-out secret of it) is refused with 401 from the next
    request on. Idempotent. The tenant's last usable admin key cannot be revoked (409
    `last_admin_key`)."""
    container.keys.revoke(admin.tenant_id, key_id)
    return Response(status_code=204)
