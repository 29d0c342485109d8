"""The audit trail over HTTP (admin only, own tenant only): a JSONL export and a chain check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.deps import AdminDep, ContainerDep, audited
from app.services.audit import AuditNote, AuditVerification

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/export", response_class=StreamingResponse, responses={200: {"content": {"application/x-ndjson": {}}}})
def export_audit(
    audit: Annotated[AuditNote, audited("audit.export")],
    admin: AdminDep,
    container: ContainerDep,
    since: Annotated[datetime | None, Query(description="events at or after this time (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="events before this time")] = None,
    action: Annotated[list[str] | None, Query(description="only these actions (repeatable), e.g. search")] = None,
) -> StreamingResponse:
    """The tenant's audit events in chain order, one JSON object per line, with `seq`,
    `prev_hash` and `hash` so a copy can be checked offline. The export is itself audited."""
    audit.details.update(since=since.isoformat() if since else None, until=until.isoformat() if until else None,
                         action=action or [])
    events = container.audit.events(admin.tenant_id, since=since, until=until, actions=action)

    def lines() -> Iterator[bytes]:
        for event in events:
            yield (json.dumps(event.model_dump(mode="json"), ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/verify", response_model=AuditVerification)
def verify_audit(admin: AdminDep, container: ContainerDep) -> AuditVerification:
    """Walks the tenant's chain: `ok`, or the first event that does not hold and why."""
    return container.audit.verify(admin.tenant_id)
