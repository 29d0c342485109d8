"""Connectors: sources Cairn keeps in sync (filesystem folder, SQL table, HTTP JSON API)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from app.deps import ContainerDep, PrincipalDep, audited
from app.services.audit import AuditNote
from app.services.connector_models import (
    ConnectorCreate,
    ConnectorPublic,
    ConnectorsPublic,
    ReconcileReport,
    SyncRequest,
    SyncStarted,
)

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])


@router.post("", status_code=201, response_model=ConnectorPublic)
def create_connector(
    body: ConnectorCreate, principal: PrincipalDep, container: ContainerDep,
    audit: Annotated[AuditNote, audited("connector.create")],
) -> ConnectorPublic:
    """Editors and admins. Secrets in `config` (tokens, database passwords) are stored but never
    returned. Nothing is read until the first sync (`POST /v1/connectors/{id}/sync`)."""
    created = container.connectors.create(principal, body)
    audit.target(connector_id=created.id, kind=created.kind)
    return created


@router.get("", response_model=ConnectorsPublic)
def list_connectors(principal: PrincipalDep, container: ContainerDep) -> ConnectorsPublic:
    """Admins see the tenant's connectors; everyone else their own."""
    return container.connectors.list(principal)


@router.get("/{connector_id}", response_model=ConnectorPublic)
def get_connector(connector_id: str, principal: PrincipalDep, container: ContainerDep) -> ConnectorPublic:
    """Configuration (secrets masked), schedule, the last sync with its counts, item totals."""
    return container.connectors.get(principal, connector_id)


@router.post("/{connector_id}/sync", status_code=202, response_model=SyncStarted)
def sync_connector(
    connector_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    audit: Annotated[AuditNote, audited("connector.sync")],
    body: Annotated[SyncRequest | None, Body()] = None,
) -> SyncStarted:
    """Starts a sync as a job (`GET /v1/jobs/{job_id}`, kind `sync`). If one is already queued
    or running, that one is returned (`already_running: true`)."""
    return container.connectors.request_sync(principal, connector_id, full=(body or SyncRequest()).full)


@router.get("/{connector_id}/reconcile", response_model=ReconcileReport)
def reconcile_connector(connector_id: str, principal: PrincipalDep, container: ContainerDep) -> ReconcileReport:
    """Lists the source now and compares it with what is indexed: which items are missing and
    why (failed, pending, never seen), and which indexed ones the source no longer has."""
    return container.connectors.reconcile(principal, connector_id)


@router.delete("/{connector_id}", status_code=204)
def delete_connector(
    connector_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    keep_documents: Annotated[bool, Query(description="leave the indexed documents in place")] = False,
) -> Response:
    container.connectors.delete(principal, connector_id, keep_documents=keep_documents)
    return Response(status_code=204)
