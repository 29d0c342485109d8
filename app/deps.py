"""Shared request dependencies as Annotated aliases."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from app.container import Container
from app.services.audit import AuditNote, outcome_of
from core import tracing
from core.errors import PermissionDenied
from core.models import Principal, Role

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_principal(
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    principal = container.keys.authenticate(credentials.credentials if credentials else None)
    tracing.annotate(tenant=principal.tenant_id)  # on the request's span, when tracing is on
    container.limiter.check(principal)  # 429 rate_limited / quota_exceeded
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_admin(principal: PrincipalDep) -> Principal:
    if principal.role is not Role.admin:
        raise PermissionDenied("this needs the admin role")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]


def audited(action: str) -> Any:
    """A route parameter `audit: Annotated[AuditNote, audited("document.delete")]` records one
    audit event per request: outcome `ok` when the route returns, `denied` or the error code
    when it raises (written before the response is sent). Path parameters become the event's
    targets; the route adds what else it knows (`audit.target(...)`, `audit.chunks(...)`)."""

    def dependency(request: Request, principal: PrincipalDep, container: ContainerDep) -> Iterator[AuditNote]:
        def commit(note: AuditNote, outcome: str) -> None:
            container.audit.record(
                note.principal, note.action, outcome=outcome, targets=note.targets, retrieved=note.retrieved,
                cited=note.cited, models=note.models, details=note.details,
            )

        note = AuditNote(action, principal, commit, targets=dict(request.path_params))
        try:
            yield note
        except Exception as exc:
            if isinstance(exc, RequestValidationError):
                outcome = "invalid_input"
            elif isinstance(exc, HTTPException):
                outcome = f"http_{exc.status_code}"
            else:
                outcome = outcome_of(exc)
            try:
                note.finish(outcome)
            except Exception:  # never hide the request's own error behind the audit write's
                log.exception("could not record the audit event for %s", action)
            raise
        else:
            if not note.deferred:
                note.finish("ok")

    return Depends(dependency, scope="function")
