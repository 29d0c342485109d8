"""Data governance (admin only, always within the admin's tenant): the PII policy, retention
purge and erasure. `DELETE /v1/documents/{id}?erase=true` lives with the documents routes.

Every change is audited (`pii_policy.update`, `retention.purge`, `erasure`); a data subject is
recorded only as its keyed hash (`subject_hmac`), never as the value itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import AdminDep, ContainerDep, audited
from app.services.audit import AuditNote
from app.services.governance import ErasureRequest, ErasureResult, PurgeResult, note_erasure
from app.services.pii_vault import PiiPolicyPublic, PiiPolicyUpdate

router = APIRouter(prefix="/v1/admin", tags=["governance"])


@router.get("/pii-policy", response_model=PiiPolicyPublic)
def get_pii_policy(admin: AdminDep, container: ContainerDep) -> PiiPolicyPublic:
    """What ingestion does with each PII type in this tenant: `keep`, `mask` (a `[EMAIL]`-style
    placeholder) or `tokenize` (a stable `[PII:EMAIL:ab12cd34]` token; the value is kept
    encrypted and shown in answers to keys holding `pii:read`)."""
    return container.pii_vault.policy(admin.tenant_id)


@router.put("/pii-policy", response_model=PiiPolicyPublic)
def put_pii_policy(
    body: PiiPolicyUpdate, audit: Annotated[AuditNote, audited("pii_policy.update")], admin: AdminDep,
    container: ContainerDep,
) -> PiiPolicyPublic:
    """Replace the tenant's policy (types not named are kept). Applies to documents ingested
    from now on; re-upload (or reindex) existing documents to apply it to them."""
    audit.details.update(policy=sorted(f"{t.value}:{action}" for t, action in body.policy.items()))
    return container.pii_vault.set_policy(admin, body)


@router.post("/purge", response_model=PurgeResult)
async def purge(
    audit: Annotated[AuditNote, audited("retention.purge")], admin: AdminDep, container: ContainerDep
) -> PurgeResult:
    """Erase the tenant's documents whose `effective_to` is older than the retention grace
    (CAIRN_GOVERNANCE__RETENTION_GRACE_DAYS) now, instead of waiting for the schedule."""
    result = await run_in_threadpool(container.governance.purge, admin.tenant_id)
    note_erasure(audit, result)
    audit.details.update(cutoff=result.cutoff.isoformat())
    return result


@router.post("/erasure", response_model=ErasureResult)
async def erasure(
    body: ErasureRequest, audit: Annotated[AuditNote, audited("erasure")], admin: AdminDep,
    container: ContainerDep,
) -> ErasureResult:
    """Erase documents by id (`doc_ids`) or every document holding a data subject's value
    (`subject`: an e-mail address, phone number, any string), whoever may read them. `dry_run`
    lists what would be erased. The result says what was removed."""
    if body.subject is not None:
        audit.details.update(subject_hmac=container.governance.subject_hmac(admin.tenant_id, body.subject))
    else:
        audit.details.update(requested=list(dict.fromkeys(body.doc_ids or [])))
    audit.details.update(dry_run=body.dry_run)
    result = await run_in_threadpool(container.governance.request, admin, body)
    note_erasure(audit, result)
    return result

