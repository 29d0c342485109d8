"""Tenant administration: the tenant's users and groups (admin, own tenant only), and tenants
themselves (admins of the operator's tenant, `CAIRN_DEFAULT_TENANT`, only: a tenant is the unit
every other admin is confined to, so only the operator creates one)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from app.auth import KeyPublic, validate_name
from app.deps import AdminDep, ContainerDep, audited
from app.services.audit import AuditNote
from core.errors import Conflict, PermissionDenied
from core.models import Principal, Role

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class UserPublic(BaseModel):
    user: str
    groups: list[str]  # from the user's usable keys
    roles: list[Role]
    active_keys: int
    keys: int


class GroupPublic(BaseModel):
    group: str
    users: list[str]


class PrincipalsPublic(BaseModel):
    users: list[UserPublic]
    groups: list[GroupPublic]


def principals_of(keys: list[KeyPublic], now: datetime) -> PrincipalsPublic:
    """Users and groups exist only as named on keys; a revoked or expired key makes nobody a
    member of anything."""
    users: dict[str, UserPublic] = {}
    members: dict[str, set[str]] = {}
    for k in keys:
        u = users.setdefault(k.user, UserPublic(user=k.user, groups=[], roles=[], active_keys=0, keys=0))
        u.keys += 1
        if k.revoked_at is not None or (k.expires_at is not None and k.expires_at <= now):
            continue
        u.active_keys += 1
        u.groups = sorted(set(u.groups) | set(k.groups))
        u.roles = sorted(set(u.roles) | {k.role})
        for g in k.groups:
            members.setdefault(g, set()).add(k.user)
    return PrincipalsPublic(
        users=sorted(users.values(), key=lambda u: u.user),
        groups=[GroupPublic(group=g, users=sorted(m)) for g, m in sorted(members.items())],
    )


@router.get("/principals", response_model=PrincipalsPublic)
def list_principals(admin: AdminDep, container: ContainerDep) -> PrincipalsPublic:
    """The tenant's users and groups, as its API keys name them (`GET /v1/keys` lists the keys)."""
    return principals_of(container.keys.list_keys(admin.tenant_id), datetime.now(UTC))


def _operator(principal: AdminDep, container: ContainerDep) -> Principal:
    if principal.tenant_id != container.settings.default_tenant:
        raise PermissionDenied("managing tenants needs an admin of the operator's tenant")
    return principal


OperatorDep = Annotated[Principal, Depends(_operator)]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,127}$")
    admin_user: str = Field(default="admin", min_length=1, max_length=200)


class TenantCreated(BaseModel):
    tenant_id: str
    admin_user: str
    key_id: str
    key: str  # the new tenant's first admin key, shown only in this response


class TenantPublic(BaseModel):
    tenant_id: str
    keys: int
    admin_keys: int  # usable (not revoked, not expired)


class TenantsPublic(BaseModel):
    data: list[TenantPublic]
    count: int


@router.post("/tenants", status_code=201, response_model=TenantCreated)
def create_tenant(
    body: TenantCreate, audit: Annotated[AuditNote, audited("tenant.create")], _op: OperatorDep,
    container: ContainerDep,
) -> TenantCreated:
    """Create a tenant with its first admin key; that admin then manages the tenant's own keys
    (`POST /v1/keys`). 409 `conflict` when the tenant already exists."""
    validate_name("user", body.admin_user)
    audit.target(tenant_id=body.tenant_id)
    if body.tenant_id in container.keys.tenants():
        raise Conflict(f"tenant {body.tenant_id!r} already exists")
    key_id, key = container.keys.create(body.tenant_id, body.admin_user, [], Role.admin)
    return TenantCreated(tenant_id=body.tenant_id, admin_user=body.admin_user, key_id=key_id, key=key)


@router.get("/tenants", response_model=TenantsPublic)
def list_tenants(_op: OperatorDep, container: ContainerDep) -> TenantsPublic:
    data = [TenantPublic(tenant_id=t, keys=k, admin_keys=a) for t, (k, a) in sorted(container.keys.tenants().items())]
    return TenantsPublic(data=data, count=len(data))
