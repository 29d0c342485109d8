from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from app.deps import ContainerDep, PrincipalDep
from app.job_eta import Progress
from core.errors import NotFound
from core.models import Role, UtcDateTime
from core.tables import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobPublic(BaseModel):
    id: str
    kind: str
    state: str
    progress: float  # 0..1; done / total where those are known
    done: int | None = None  # sync: items handled; reindex: documents rebuilt
    total: int | None = None
    eta_s: float | None = None  # from observed throughput and queue position; null when unknown
    error: str | None
    document_id: str | None
    version: int | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    finished_at: UtcDateTime | None


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


def _public(job: Job, eta: Progress | None = None) -> JobPublic:
    return JobPublic(
        id=job.id, kind=job.kind, state=job.state, progress=job.progress, error=job.error,
        document_id=job.doc_id, version=job.version, created_at=job.created_at,
        updated_at=job.updated_at, finished_at=job.finished_at,
        done=eta.done if eta else None, total=eta.total if eta else None, eta_s=eta.eta_s if eta else None,
    )


@router.get("", response_model=JobsPublic)
def list_jobs(
    principal: PrincipalDep,
    container: ContainerDep,
    state: Annotated[str | None, Query(description="queued, parsing, chunking, embedding, indexed, failed")] = None,
    kind: Annotated[str | None, Query(description="ingest, sync, eval, reindex, unindex")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobsPublic:
    """Your jobs (admins: the tenant's), newest first."""
    q = select(Job).where(Job.tenant_id == principal.tenant_id)
    if principal.role is not Role.admin:
        q = q.where(Job.created_by == principal.user)
    if state:
        q = q.where(Job.state == state)
    if kind:
        q = q.where(Job.kind == kind)
    with container.sessions() as s:
        count = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = list(s.scalars(q.order_by(Job.created_at.desc()).limit(limit)).all())
        etas = container.job_eta.for_jobs(s, rows)
        return JobsPublic(data=[_public(j, etas.get(j.id)) for j in rows], count=count)


@router.post("/{job_id}/retry", status_code=202, response_model=JobPublic)
def retry_job(job_id: str, principal: PrincipalDep, container: ContainerDep) -> JobPublic:
    """Put a failed job back in its queue under the same id: ingest reuses the stored original,
    a sync or evaluation run starts over, a reindex builds a new generation again."""
    container.job_retry.retry(principal, job_id)
    return get_job(job_id, principal, container)


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
        return _public(job, container.job_eta.for_jobs(s, [job]).get(job.id))
