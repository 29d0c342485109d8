from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.deps import ContainerDep, PrincipalDep
from core.errors import NotFound
from core.models import Role, UtcDateTime
from core.tables import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobPublic(BaseModel):
    id: str
    kind: str
    state: str
    progress: float
    error: str | None
    document_id: str | None
    version: int | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    finished_at: UtcDateTime | None


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, principal: PrincipalDep, container: ContainerDep) -> JobPublic:
    """A job is visible to whoever started it and to the tenant's admins."""
    with container.sessions() as s:
        job = s.get(Job, job_id)
        if (
            job is None
            or job.tenant_id != principal.tenant_id
            or (job.created_by != principal.user and principal.role is not Role.admin)
        ):
            raise NotFound(f"job {job_id!r} not found")
        return JobPublic(
            id=job.id, kind=job.kind, state=job.state, progress=job.progress, error=job.error,
            document_id=job.doc_id, version=job.version, created_at=job.created_at,
            updated_at=job.updated_at, finished_at=job.finished_at,
        )
