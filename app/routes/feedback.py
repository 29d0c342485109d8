"""Answer feedback: thumbs up / down on an answer's run, summaries, and labels from feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import ContainerDep, PrincipalDep, audited
from app.services.audit import AuditNote
from app.services.feedback import (
    FeedbackCreate,
    FeedbackDatasetCreate,
    FeedbackDatasetPublic,
    FeedbackPublic,
    FeedbackSummary,
)

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/answers/{run_id}/feedback", status_code=201, response_model=FeedbackPublic)
def give_feedback(
    run_id: str, body: FeedbackCreate, principal: PrincipalDep, container: ContainerDep,
    audit: Annotated[AuditNote, audited("answer.feedback")],
) -> FeedbackPublic:
    """Judge an answer (`run_id` from `POST /v1/answers`): `rating` up or down, an optional
    `reason`, and optionally the source it should have cited (`corrected_citation`: a document
    the caller may read, optionally one of its chunks and a verbatim quote). Only who may see the
    run (its starter, tenant admins) may judge it; 404 otherwise. One feedback per caller and
    run: sending again replaces it (`replaced: true`)."""
    audit.target(run_id=run_id)
    audit.details["rating"] = body.rating
    return container.feedback.give(principal, run_id, body)


@router.get("/feedback/summary", response_model=FeedbackSummary)
def feedback_summary(
    principal: PrincipalDep,
    container: ContainerDep,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; naive times are UTC")] = None,
) -> FeedbackSummary:
    """Acceptance rate (up / (up + down)), counts and the most frequent thumbs-down reasons, per
    workflow and in total: the whole tenant for an admin, the caller's own feedback otherwise."""
    return container.feedback.summary(principal, workflow, since)


@router.post("/eval-datasets/from-feedback", status_code=201, response_model=FeedbackDatasetPublic)
def dataset_from_feedback(
    body: FeedbackDatasetCreate, principal: PrincipalDep, container: ContainerDep
) -> FeedbackDatasetPublic:
    """Labelled queries over the tenant's corpus, built from the feedback the caller may see (an
    admin: the tenant's; others: their own): each judged question is a query, the documents a
    thumbs-up answer cited are relevant (grade 1), a corrected citation's document is relevant
    (grade 2), the documents a thumbs-down answer cited get grade 0. Evaluate or tune on it like
    any attached dataset."""
    return container.feedback.create_dataset(principal, body)
