"""Retrieval tuning: proposals from tune jobs (`POST /v1/evals` with `kind: tune`), activation per
tenant, and the settings in force."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import AdminDep, ContainerDep, PrincipalDep, audited
from app.services.audit import AuditNote
from app.services.tuning import ActiveTuningPublic, TuningProposalPublic, TuningProposalsPublic

router = APIRouter(prefix="/v1/tuning", tags=["evaluation"])


@router.get("/proposals", response_model=TuningProposalsPublic)
def list_proposals(
    principal: PrincipalDep, container: ContainerDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> TuningProposalsPublic:
    return container.tuning.list(principal, limit=limit)


@router.get("/proposals/{proposal_id}", response_model=TuningProposalPublic)
def get_proposal(proposal_id: str, principal: PrincipalDep, container: ContainerDep) -> TuningProposalPublic:
    """Every trial's training score, the best settings, and both held-back scores."""
    return container.tuning.get(principal, proposal_id)


@router.post("/proposals/{proposal_id}/activate", response_model=ActiveTuningPublic)
def activate_proposal(
    proposal_id: str, audit: Annotated[AuditNote, audited("tuning.activate")], principal: AdminDep,
    container: ContainerDep,
) -> ActiveTuningPublic:
    """Apply the proposal to this tenant's searches, only if it scores better than the current
    settings on the held-back queries; else 409 `proposal_not_better` with both numbers."""
    audit.target(proposal_id=proposal_id)
    return container.tuning.activate(principal, proposal_id)


@router.get("/active", response_model=ActiveTuningPublic)
def active_tuning(principal: PrincipalDep, container: ContainerDep) -> ActiveTuningPublic:
    """The fusion and rerank settings this tenant's searches use now, and the server defaults."""
    return container.tuning.active_public(principal)


@router.post("/active/reset", response_model=ActiveTuningPublic)
def reset_tuning(
    audit: Annotated[AuditNote, audited("tuning.reset")], principal: AdminDep, container: ContainerDep
) -> ActiveTuningPublic:
    """Back to the server's configured defaults."""
    return container.tuning.reset(principal)
