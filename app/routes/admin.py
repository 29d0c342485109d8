"""Tenant administration views (admin only, own tenant only)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel

from app.auth import KeyPublic
from app.deps import AdminDep, ContainerDep
from core.models import Role

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
