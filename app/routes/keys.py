from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.deps import AdminDep, ContainerDep
from core.models import Role

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyCreate(BaseModel):
    user: str = Field(min_length=1, max_length=200)
    groups: list[str] = Field(default_factory=list, max_length=200)
    role: Role = Role.reader
    expires_at: datetime | None = None


class KeyCreated(BaseModel):
    key: str
    key_id: str
    user: str
    groups: list[str]
    role: Role
    principals: list[str]


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, admin: AdminDep, container: ContainerDep) -> KeyCreated:
    """Create an API key in the admin's tenant. The key is shown only in this response."""
    key_id, key = container.keys.create(admin.tenant_id, body.user, body.groups, body.role, body.expires_at)
    groups = sorted(set(body.groups))
    return KeyCreated(
        key=key, key_id=key_id, user=body.user, groups=groups, role=body.role,
        principals=[f"user:{body.user}", *(f"group:{g}" for g in groups)],
    )
