"""Zero-downtime reindex (admin): rebuild the whole collection into a new generation, swap the
alias, roll back, drop the kept generation. The collection holds every tenant, so only admins of
the operator's tenant (CAIRN_DEFAULT_TENANT) may touch it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.deps import AdminDep, ContainerDep
from app.services.reindex import ReindexRunPublic, ReindexStatus
from core.errors import PermissionDenied
from core.models import Principal

router = APIRouter(prefix="/v1/admin/reindex", tags=["admin"])


def _operator(principal: AdminDep, container: ContainerDep) -> Principal:
    if principal.tenant_id != container.settings.default_tenant:
        raise PermissionDenied("reindexing rebuilds every tenant's index; it needs an admin of the operator's tenant")
    return principal


OperatorDep = Annotated[Principal, Depends(_operator)]


@router.post("", status_code=202, response_model=ReindexRunPublic)
def start_reindex(principal: OperatorDep, container: ContainerDep) -> ReindexRunPublic:
    """Queue a rebuild of every live document with the current parser, chunking and embedding
    settings; follow it at `GET /v1/jobs/{id}` (kind `reindex`). 409 while one is active."""
    return container.reindex.start(principal)


@router.get("", response_model=ReindexStatus)
def reindex_status(principal: OperatorDep, container: ContainerDep) -> ReindexStatus:
    """Which generation serves, which is kept for rollback, and recent runs."""
    return container.reindex.status()


@router.post("/rollback", response_model=ReindexStatus)
def rollback(principal: OperatorDep, container: ContainerDep) -> ReindexStatus:
    """Serve the kept previous generation again (409 when none is kept or a reindex runs)."""
    return container.reindex.rollback()


@router.post("/cleanup", response_model=ReindexStatus)
def cleanup(principal: OperatorDep, container: ContainerDep) -> ReindexStatus:
    """Drop the generation kept for rollback."""
    return container.reindex.cleanup()
