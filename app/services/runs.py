"""Workflow runs as the API shows them: a timeline built from the run's event log.

The log holds every step's full output (retrieved chunk texts, prompts' results); the timeline
keeps what an operator needs (who, which models, tokens, cost, timings, failures, reviews) and
leaves the chunk texts out: `result` carries the verified answer and its quotes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from core.errors import Unavailable
from core.models import UtcDateTime
from orchestration.answers import AnswerService
from orchestration.types import AnswerResult
from orchestration.workflows.engine import RunView
from orchestration.workflows.spec import HumanReviewStep, WorkflowSpec
from orchestration.workflows.store import RunRecord, StepEvent


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0


class EventPublic(BaseModel):
    seq: int
    step_id: str
    kind: str  # completed | failed | retrying | skipped | paused | reviewed | compensated | ...
    attempt: int
    at: UtcDateTime
    # time since the previous event (or the run's start): for a `completed` event of a
    # sequential step this is how long the step took
    elapsed_ms: float
    error: str | None = None


class StepPublic(BaseModel):
    id: str
    type: str
    status: str  # pending, or the kind of the step's latest event
    attempts: int = 0
    started_at: UtcDateTime | None = None
    finished_at: UtcDateTime | None = None
    duration_ms: float | None = None
    model: str | None = None
    provider: str | None = None
    fallback: str | bool | None = None
    usage: Usage | None = None
    retrieved: int | None = None  # gather: chunks returned for the starter
    passed: bool | None = None  # validate
    failures: list[str] = Field(default_factory=list)
    abstained: bool | None = None
    error: str | None = None
    review: dict[str, Any] | None = None  # human_review: action, reviewer, comment


class ReviewPending(BaseModel):
    step: str
    target: str
    instructions: str


class RunSummary(BaseModel):
    id: str
    workflow: str
    version: int
    status: str
    started_by: str
    question: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class RunsPublic(BaseModel):
    data: list[RunSummary]
    count: int


class RunPublic(RunSummary):
    reason: str | None
    inputs: dict[str, Any]
    usage: Usage
    duration_ms: float
    awaiting_review: ReviewPending | None = None
    steps: list[StepPublic]
    events: list[EventPublic]
    # the answer (or the draft under review); None while running and for failed runs
    result: AnswerResult | None = None


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _ms(a: datetime, b: datetime) -> float:
    return round((_aware(b) - _aware(a)).total_seconds() * 1000, 2)


def summary(run: RunRecord) -> RunSummary:
    return RunSummary(
        id=run.id,
        workflow=run.workflow,
        version=run.version,
        status=run.status,
        started_by=str(run.principal.get("user", "")),
        question=run.inputs.get("question"),
        created_at=run.created_at,
        updated_at=run.updated_at,
    )


def _usage(outputs: list[dict[str, Any]]) -> Usage:
    """Model calls of generate outputs; a reviewed step's output repeats its target's usage."""
    rows = [o["usage"] for o in outputs if isinstance(o.get("usage"), dict) and "review" not in o]
    return Usage(
        input_tokens=sum(int(u.get("input_tokens", 0)) for u in rows),
        output_tokens=sum(int(u.get("output_tokens", 0)) for u in rows),
        cost_usd=round(sum(float(u.get("cost_usd", 0.0)) for u in rows), 8),
        calls=len(rows),
    )


def _step(step_id: str, step_type: str, events: list[StepEvent], before: datetime) -> StepPublic:
    mine = [e for e in events if e.step_id == step_id]
    out = StepPublic(id=step_id, type=step_type, status=mine[-1].kind if mine else "pending")
    if not mine:
        return out
    out.attempts = sum(1 for e in mine if e.kind in ("completed", "failed", "retrying"))
    out.started_at, out.finished_at = before, mine[-1].created_at
    out.duration_ms = _ms(before, mine[-1].created_at)
    out.error = next((e.error for e in reversed(mine) if e.error), None)
    review = next((e.output for e in mine if e.kind == "reviewed"), None)
    if review:
        out.review = {k: review.get(k) for k in ("action", "reviewer", "comment")}
    done = next((e.output for e in reversed(mine) if e.kind == "completed" and e.output), None)
    if done:
        if step_type == "generate":  # validate / review steps copy these from their target
            out.model, out.provider = done.get("model"), done.get("provider")
            out.fallback = done.get("fallback")
            out.usage = _usage([done])
        out.retrieved = done.get("count") if "chunks" in done else None
        out.passed = done.get("passed")
        out.failures = list(done.get("failures") or [])
        out.abstained = done.get("abstained")
    return out


def timeline(view: RunView, answers: AnswerService) -> RunPublic:
    run, events = view.run, view.events
    spec = WorkflowSpec.model_validate(run.spec)
    started = run.created_at
    public_events = []
    previous = started
    for e in events:
        public_events.append(
            EventPublic(
                seq=e.seq, step_id=e.step_id, kind=e.kind, attempt=e.attempt, at=e.created_at,
                elapsed_ms=_ms(previous, e.created_at), error=e.error,
            )
        )  # fmt: skip
        previous = e.created_at

    # a step starts when the event before its first event was written (steps run in order;
    # children of a `parallel` step overlap, so theirs is an upper bound)
    first_before: dict[str, datetime] = {}
    previous = started
    for e in events:
        first_before.setdefault(e.step_id, previous)
        previous = e.created_at
    types = {s.id: s.type for s in spec.steps}
    for s in spec.steps:
        types.update({c.id: c.type for c in getattr(s, "steps", [])})
    order = list(dict.fromkeys([*(s.id for s in spec.steps), *(e.step_id for e in events)]))
    steps = [_step(sid, types.get(sid, "?"), events, first_before.get(sid, started)) for sid in order]

    pending = None
    if run.status == "awaiting_review":
        paused = [e for e in events if e.kind == "paused"][-1]
        step = spec.step(paused.step_id)
        if isinstance(step, HumanReviewStep):
            pending = ReviewPending(step=step.id, target=step.target, instructions=step.instructions)

    result = None
    if run.status not in ("running", "compensating"):
        try:
            result = answers.result_of(run)
        except Unavailable:
            result = None  # a failed run has no answer; `reason` says why
    end = events[-1].created_at if events else run.updated_at
    return RunPublic(
        **summary(run).model_dump(),
        reason=run.reason,
        inputs=run.inputs,
        usage=_usage([e.output for e in events if e.kind == "completed" and e.output]),
        duration_ms=_ms(started, end),
        awaiting_review=pending,
        steps=steps,
        events=public_events,
        result=result,
    )
