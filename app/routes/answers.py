"""Grounded answers: `POST /v1/answers`, as JSON or as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.deps import ContainerDep, PrincipalDep, audited
from app.routes import _sse
from app.services.audit import AuditNote
from core.models import SearchFilters
from orchestration.types import AnswerEvent, AnswerResult

router = APIRouter(prefix="/v1", tags=["answers"])

InputValue = str | int | float | bool


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    workflow: str = Field(default="grounded_qa", min_length=1, max_length=64)
    gatherers: list[str] | None = None
    filters: SearchFilters | None = None
    top_k: int | None = Field(default=None, ge=1, le=100)
    stream: bool | None = None
    # further workflow inputs, e.g. support_assistant's `history`
    inputs: dict[str, InputValue] | None = None


def _event(e: AnswerEvent) -> bytes:
    if e.type == "token":
        return _sse.encode({"text": e.text}, "token")
    if e.type == "final" and e.result is not None:
        return _sse.encode(e.result.model_dump(mode="json"), "final")
    return _sse.encode({"code": e.code, "message": e.message}, "error")


async def _encoded(events: AsyncIterator[AnswerEvent]) -> AsyncIterator[bytes]:
    async for e in events:
        yield _event(e)


def _error(code: str, message: str) -> bytes:
    return _sse.encode({"code": code, "message": message}, "error")


@router.post(
    "/answers",
    response_model=AnswerResult,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when streaming"}},
)
async def answer(
    body: AnswerRequest, request: Request, principal: PrincipalDep, container: ContainerDep,
    audit: Annotated[AuditNote, audited("answer")],
) -> AnswerResult | StreamingResponse:
    """Answer from what the caller may see, with inline `[n]` markers that refer to
    `citations[].n`; every citation's `quote` is verified verbatim against the cited chunk, and
    weak evidence gives `abstained: true` instead of a guess. Every answer is a recorded
    workflow run (`run_id`, see `GET /v1/runs/{id}`); a workflow with a human-review step
    returns its draft with `status: awaiting_review`.

    Streaming (`"stream": true` or `Accept: text/event-stream`) sends server-sent events:

    - `event: token`, `data: {"text": "..."}`: answer text as it is generated, markers already
      renumbered (zero or more);
    - `event: final`, `data: <the JSON response above>`: exactly once, last; it is
      authoritative: when the run abstains its `answer` replaces the streamed text;
    - `event: error`, `data: {"code", "message"}`: instead of `final` when the run failed after
      the stream started (errors before that are ordinary 4xx/5xx responses).

    Bad input is refused before any event is sent."""
    container.retriever.check_gatherers(body.gatherers)
    service = container.answers
    args = (principal, body.question, body.workflow, body.gatherers, body.filters, body.top_k, body.inputs)
    if _sse.wants_stream(request, body.stream):
        return _sse.event_stream(_encoded(audit.follow(service.stream(*args))), _error)
    return audit.answer(await service.answer(*args))
