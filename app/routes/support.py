"""The support desk: run the support-agent assistant on a ticket and follow it step by step."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ContainerDep, PrincipalDep
from app.services import support
from app.services.support import TicketCreate, TicketPublic

router = APIRouter(prefix="/v1/support", tags=["support"])


@router.post("/tickets", status_code=202, response_model=TicketPublic)
async def open_ticket(body: TicketCreate, principal: PrincipalDep, container: ContainerDep) -> TicketPublic:
    """Start the `support_assistant` workflow on a ticket (question = subject + body, `history`
    = the customer's earlier contact) and return at once with the run (`run.id`); poll
    `GET /v1/support/tickets/{run_id}` to see each step's output as it completes. A draft that
    fails the quality gate or a low-confidence review pauses the run in `awaiting_review`:
    decide with `POST /v1/runs/{run_id}/review` (approve / edit / reject)."""
    answers = container.answers
    run_id = support.start(answers, principal, body)
    return support.view(answers, answers.engine.get_run(run_id, principal))


@router.get("/tickets/{run_id}", response_model=TicketPublic)
def get_ticket(run_id: str, principal: PrincipalDep, container: ContainerDep) -> TicketPublic:
    """One run as the support desk shows it: the runs timeline plus every step's output
    (analysis, draft with verified citations, review, quality gate) and, for a workflow with a
    review step, the draft's raw text with its sources in the numbering an `edit` is checked
    against. Works for any run the caller may see (its starter, or a tenant admin), so the review
    queue uses it too; 404 otherwise."""
    answers = container.answers
    return support.view(answers, answers.engine.get_run(run_id, principal))
