"""Workflow runs: timelines and human review."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import ContainerDep, PrincipalDep, audited
from app.services.audit import AuditNote
from app.services.runs import RunPublic, RunsPublic, summary, timeline
from core.models import Role
from orchestration.workflows.engine import ReviewDecision

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.get("", response_model=RunsPublic)
def list_runs(
    principal: PrincipalDep,
    container: ContainerDep,
    status: Annotated[str | None, Query(max_length=24, description="e.g. awaiting_review")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RunsPublic:
    """Newest first: the caller's own runs, or every run of the tenant for an admin (the same
    rule as `GET /v1/runs/{id}`)."""
    runs = container.runs.list_runs(status=status, tenant_id=principal.tenant_id)
    mine = [r for r in reversed(runs) if principal.role is Role.admin or r.principal.get("user") == principal.user]
    data = [summary(r) for r in mine[:limit]]
    return RunsPublic(data=data, count=len(data))


@router.get("/{run_id}", response_model=RunPublic)
def get_run(run_id: str, principal: PrincipalDep, container: ContainerDep) -> RunPublic:
    """The run's timeline: each step's status, attempts, timings, model, tokens and cost, every
    event, and the answer. Visible to whoever started the run and to tenant admins only (its
    steps retrieved under the starter's ACL); anyone else gets 404, as for a run that does not
    exist."""
    answers = container.answers
    return timeline(answers.engine.get_run(run_id, principal), answers)


@router.post("/{run_id}/review", response_model=RunPublic)
async def review_run(
    run_id: str, decision: ReviewDecision, principal: PrincipalDep, container: ContainerDep,
    audit: Annotated[AuditNote, audited("run.review")],
) -> RunPublic:
    """Decide on a run waiting at a `human_review` step: `approve` keeps the draft, `edit`
    replaces it with `text` (its `[n]` markers are verified again against the same sources),
    `reject` ends the run (undoing completed steps that declared a compensation). Needs the
    editor or admin role and a run the caller can see; 409 when the run is not waiting."""
    answers = container.answers
    audit.details.update(decision=decision.action)
    await answers.engine.review(run_id, principal, decision)
    return timeline(answers.engine.get_run(run_id, principal), answers)
