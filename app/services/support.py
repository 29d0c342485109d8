"""The support desk: a ticket runs the `support_assistant` workflow in the background, and the
agent's screen polls one view of the run with every step's output as it lands.

`POST /v1/answers` holds the request until the run finishes or pauses, so a screen that wants to
show the analysis before the draft is ready needs the run id first: `start()` records the run,
returns at once, and lets the engine execute it on the event loop. A process that stops mid-run
leaves it `running`; the lifespan's `recover_runs()` continues it from its last logged step.

The view is built from the run's event log, for the run's starter and tenant admins only (the
engine's `get_run` rule). Retrieved chunk texts stay out, as in the runs timeline; the draft's raw
text is included with its sources in context order, because that is the numbering a reviewer's
edit is verified against (the shown answer is renumbered densely).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.services.runs import RunPublic, timeline
from core.errors import InvalidInput
from core.models import Principal
from orchestration.answers import MAX_QUESTION_CHARS, AnswerService
from orchestration.types import Citation
from orchestration.workflows.spec import GenerateStep, HumanReviewStep, WorkflowSpec
from orchestration.workflows.steps import context_chunks
from orchestration.workflows.types import RunView

log = logging.getLogger(__name__)

WORKFLOW = "support_assistant"
# runs executing in this process; held so the event loop does not drop them mid-run
_running: set[asyncio.Task[Any]] = set()


class TicketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=128, pattern=r"^[\w.@:\-]+$")
    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    history: str | None = Field(default=None, max_length=20_000, description="earlier contact, free text")


class StepOutput(BaseModel):
    """What one step produced, as the agent reads it."""

    id: str
    type: str
    status: str
    text: str | None = None  # generate: the answer (cited steps: verified and renumbered)
    citations: list[Citation] = Field(default_factory=list)
    abstained: bool | None = None
    confidence: float | None = None
    groundedness: float | None = None
    passed: bool | None = None  # validate
    failures: list[str] = Field(default_factory=list)
    retrieved: int | None = None  # gather


class Source(BaseModel):
    n: int  # the [n] a reviewer's edit uses for this source
    doc_id: str
    chunk_id: str
    title: str


class Draft(BaseModel):
    step: str
    text: str  # the raw draft, markers numbered as `sources`
    sources: list[Source]


class TicketPublic(BaseModel):
    customer_id: str | None
    subject: str | None
    run: RunPublic
    outputs: list[StepOutput]
    draft: Draft | None = None  # the reviewed step's draft (or its edit) once it exists


def _question(body: TicketCreate) -> str:
    question = f"{body.subject.strip()}\n\n{body.body.strip()}"
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidInput(
            f"subject and body together are {len(question)} characters; the limit is {MAX_QUESTION_CHARS}",
            field="body",
        )
    return question


def start(answers: AnswerService, principal: Principal, body: TicketCreate) -> str:
    inputs: dict[str, Any] = {
        "question": _question(body),
        "customer_id": body.customer_id,
        "subject": body.subject.strip(),
        "top_k": answers.default_top_k,
        "filters": None,
        "gatherers": None,
    }
    if body.history and body.history.strip():
        inputs["history"] = body.history.strip()
    run = answers.engine.create_run(WORKFLOW, principal, inputs)
    task = asyncio.create_task(_execute(answers, run.id, principal), name=f"ticket-{run.id}")
    _running.add(task)
    task.add_done_callback(_running.discard)
    return run.id


async def _execute(answers: AnswerService, run_id: str, principal: Principal) -> None:
    try:
        await answers.engine.resume(run_id, principal)
    except Exception:  # the run stays `running`; recovery at the next start continues it
        log.exception("support ticket run %s stopped unexpectedly", run_id)


def _step_output(step_id: str, step_type: str, status: str, out: dict[str, Any] | None) -> StepOutput:
    view = StepOutput(id=step_id, type=step_type, status=status)
    if not out:
        return view
    if step_type == "generate":
        view.text = str(out.get("answer") or out.get("text") or "")
        view.citations = [Citation.model_validate(c) for c in out.get("citations") or []]
        view.abstained = out.get("abstained")
        view.confidence = out.get("confidence")
        view.groundedness = out.get("groundedness")
    elif step_type == "gather":
        view.retrieved = out.get("count")
    elif step_type in ("validate", "human_review"):
        view.passed = out.get("passed")
        view.failures = list(out.get("failures") or [])
        if step_type == "human_review":
            view.text = str(out.get("answer") or "") or None
    return view


def _draft(spec: WorkflowSpec, outputs: dict[str, dict[str, Any]]) -> Draft | None:
    review = next((s for s in spec.steps if isinstance(s, HumanReviewStep)), None)
    if review is None:
        return None
    target = spec.step(review.target)
    done = outputs.get(review.id) or outputs.get(review.target)
    if not done or not isinstance(target, GenerateStep) or not target.context:
        return None
    chunks = context_chunks(outputs, target.context)
    sources = [
        Source(n=i, doc_id=c["doc_id"], chunk_id=c["chunk_id"], title=c.get("title") or c["doc_id"])
        for i, c in enumerate(chunks, start=1)
    ]
    return Draft(step=target.id, text=str(done.get("text") or done.get("answer") or ""), sources=sources)


def view(answers: AnswerService, run: RunView) -> TicketPublic:
    spec = WorkflowSpec.model_validate(run.run.spec)
    outputs = {e.step_id: e.output or {} for e in run.events if e.kind == "completed"}
    public = timeline(run, answers)
    steps = [_step_output(s.id, s.type, s.status, outputs.get(s.id)) for s in public.steps]
    return TicketPublic(
        customer_id=run.run.inputs.get("customer_id"),
        subject=run.run.inputs.get("subject"),
        run=public,
        outputs=steps,
        draft=_draft(spec, outputs),
    )
