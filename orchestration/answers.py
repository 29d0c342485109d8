"""Grounded answers for the API: run an answer workflow for the caller and shape its result.

The principal is passed to the retriever untouched (ACL filtering happens there) and citations can
only point at chunks that call returned, so an answer never reveals more than a search would.
`answer()` runs any registered workflow through the engine (so every answer is a recorded run);
`stream()` streams `grounded_qa` token by token and records the same run shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from core.errors import CairnError, InvalidInput, Unavailable
from core.llm import Completion, ModelProvider, Retriever
from core.models import Principal, SearchFilters
from orchestration._text import estimate_tokens
from orchestration.citations import MarkerRewriter, ground_renumbered
from orchestration.grounded import NOT_FOUND, is_abstention
from orchestration.types import AnswerEvent, AnswerResult, Citation
from orchestration.workflows.engine import WorkflowEngine
from orchestration.workflows.registry import WorkflowRegistry
from orchestration.workflows.spec import GatherStep, GenerateStep
from orchestration.workflows.steps import (
    NO_CONTEXT,
    Action,
    StepContext,
    generate_output,
    generate_request,
    run_gather,
)
from orchestration.workflows.store import InMemoryRunStore, RunRecord, RunStoreProtocol

MAX_QUESTION_CHARS = 4000
# (principal, cited (doc_id, version, verbatim quote) spans) -> text with the PII tokens of those
# spans revealed (app.services.pii_vault.PiiVault.revealer)
Revealer = Callable[[Principal, Sequence[tuple[str, int, str]]], Callable[[str], str]]


class AnswerService:
    """`answer()` for JSON responses, `stream()` for server-sent events; same verification."""

    def __init__(
        self,
        retriever: Retriever,
        model: ModelProvider,
        run_store: RunStoreProtocol | None = None,
        *,
        registry: WorkflowRegistry | None = None,
        actions: Mapping[str, Action] | None = None,
        default_top_k: int = 5,
        max_top_k: int = 50,
        reveal: Revealer | None = None,
    ) -> None:
        if not 1 <= default_top_k <= max_top_k:
            raise ValueError(f"default_top_k must be in [1, max_top_k={max_top_k}], got {default_top_k}")
        self._model = model
        self.engine = WorkflowEngine(
            run_store or InMemoryRunStore(), retriever, model, registry=registry, actions=actions
        )
        self._retriever = retriever
        self._reveal = reveal
        self.default_top_k = default_top_k
        self.max_top_k = max_top_k

    def _inputs(
        self,
        question: str,
        top_k: int | None,
        filters: SearchFilters | None,
        gatherers: list[str] | None,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        q = question.strip()
        if not q:
            raise InvalidInput("question is empty; send the question text in `question`")
        if len(q) > MAX_QUESTION_CHARS:
            raise InvalidInput(f"question is {len(q)} characters; the limit is {MAX_QUESTION_CHARS}")
        k = self.default_top_k if top_k is None else top_k
        if not 1 <= k <= self.max_top_k:
            raise InvalidInput(f"top_k must be between 1 and {self.max_top_k}, got {k}")
        return {
            **(extra or {}),
            "question": q,
            "top_k": k,
            "filters": filters.model_dump(mode="json", exclude_none=True) if filters else None,
            "gatherers": gatherers,
        }

    def result_of(self, run: RunRecord, started: float | None = None) -> AnswerResult:
        """A run (finished or paused) as an answer; also what `GET /v1/runs/{id}` can show."""
        if run.status == "failed":
            raise Unavailable(
                f"the {run.workflow} workflow failed ({run.reason}); retry later", run_id=run.id
            )
        out = run.output or {}
        if run.status == "awaiting_review":
            out = self._paused_output(run)
        events = self.engine.store.events(run.id)
        retrieved = [
            c["chunk_id"]
            for e in events
            if e.kind == "completed" and e.output and "chunks" in e.output
            for c in e.output["chunks"]
        ]
        usage = [
            e.output["usage"] for e in events if e.kind == "completed" and e.output and "usage" in e.output
        ]
        settled = run.status in ("succeeded", "awaiting_review")
        return AnswerResult(
            answer=str(out.get("answer", NOT_FOUND)) if settled else NOT_FOUND,
            citations=[Citation.model_validate(c) for c in out.get("citations", [])] if settled else [],
            abstained=bool(out.get("abstained", True)) if settled else True,
            run_id=run.id,
            workflow=run.workflow,
            status=run.status,
            model=out.get("model"),
            provider=out.get("provider"),
            confidence=out.get("confidence"),
            citation_coverage=round(float(out.get("citation_coverage") or 0.0), 4),
            groundedness=round(float(out.get("groundedness") or 0.0), 4),
            retrieved=retrieved,
            usage={
                "input_tokens": sum(int(u.get("input_tokens", 0)) for u in usage),
                "output_tokens": sum(int(u.get("output_tokens", 0)) for u in usage),
                "cost_usd": run.cost_usd,
                "calls": len(usage),
            },
            latency_ms=round((time.perf_counter() - started) * 1000, 2) if started else 0.0,
        )

    def revealed(self, principal: Principal, result: AnswerResult) -> AnswerResult:
        """The answer as this caller may read it: `reveal` swaps PII tokens for their values
        when the caller holds `pii:read`, and only tokens that occur in the run's cited quotes
        (verbatim spans of chunks this caller could read): a token the model merely wrote, or
        was asked to repeat, stays a token. Citations were verified against the stored
        (tokenized) chunk text before this, and their offsets still index that text."""
        if self._reveal is None or not principal.can_read_pii():
            return result
        cited = [
            (c.doc_id, c.version, span) for c in result.citations for span in (c.quote, *(q.text for q in c.quotes))
        ]
        reveal = self._reveal(principal, cited)
        citations = [
            c.model_copy(update={
                "quote": reveal(c.quote),
                "quotes": [q.model_copy(update={"text": reveal(q.text)}) for q in c.quotes],
            })
            for c in result.citations
        ]
        return result.model_copy(update={"answer": reveal(result.answer), "citations": citations})

    def _paused_output(self, run: RunRecord) -> dict[str, Any]:
        """The draft waiting for review, so the agent sees what a reviewer will decide on."""
        events = self.engine.store.events(run.id)
        paused = [e for e in events if e.kind == "paused"][-1]
        target = (paused.output or {}).get("target", "")
        return next(
            (e.output or {} for e in reversed(events) if e.kind == "completed" and e.step_id == target), {}
        )

    async def answer(
        self,
        principal: Principal,
        question: str,
        workflow: str = "grounded_qa",
        gatherers: list[str] | None = None,
        filters: SearchFilters | None = None,
        top_k: int | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> AnswerResult:
        """Runs `workflow` to completion or to a human-review pause (status `awaiting_review`)."""
        started = time.perf_counter()
        run = await self.engine.start(
            workflow, principal, self._inputs(question, top_k, filters, gatherers, inputs)
        )
        return self.revealed(principal, self.result_of(run, started))

    def stream(
        self,
        principal: Principal,
        question: str,
        workflow: str = "grounded_qa",
        gatherers: list[str] | None = None,
        filters: SearchFilters | None = None,
        top_k: int | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[AnswerEvent]:
        """Validates now (so bad input is a 4xx before any event is sent), streams later.

        Token events carry text already renumbered (the same rewriter the final answer uses); the
        final event is authoritative: on abstention its answer replaces the streamed text. Only
        workflows shaped like grounded_qa (gather then a cited generate) stream tokens; others
        send just the final event. Failures after the start arrive as one `error` event."""
        data = self._inputs(question, top_k, filters, gatherers, inputs)
        steps = self.engine.registry.get(workflow).steps
        gather, gen = (steps[0], steps[1]) if len(steps) > 1 else (steps[0], None)
        if isinstance(gather, GatherStep) and isinstance(gen, GenerateStep) and gen.cite:
            return self._stream_tokens(principal, workflow, data, gather, gen)
        return self._final_only(principal, workflow, data)

    async def _final_only(
        self, principal: Principal, workflow: str, data: dict[str, Any]
    ) -> AsyncIterator[AnswerEvent]:
        started = time.perf_counter()
        try:
            run = await self.engine.start(workflow, principal, data)
            yield AnswerEvent(type="final", result=self.revealed(principal, self.result_of(run, started)))
        except CairnError as exc:
            yield AnswerEvent(type="error", code=exc.code, message=exc.message)

    async def _stream_tokens(
        self, principal: Principal, workflow: str, data: dict[str, Any], gather: GatherStep, gen: GenerateStep
    ) -> AsyncIterator[AnswerEvent]:
        """Runs gather and a streamed generate itself, records both exactly as the engine would,
        then lets the engine finish the run (quality gates) by replaying those two steps."""
        started = time.perf_counter()
        run = self.engine.create_run(workflow, principal, data)
        try:
            ctx = StepContext(run.id, run.workflow, principal, run.inputs)
            ctx.outputs[gather.id] = await run_gather(gather, ctx, self._retriever)
            self.engine.store.append_event(run.id, gather.id, "completed", output=ctx.outputs[gather.id])
            chunks = ctx.chunks(gen.context)
            output = dict(NO_CONTEXT)
            if chunks:
                req = generate_request(gen, ctx)
                rewriter = MarkerRewriter(len(chunks))
                parts: list[str] = []
                async for delta in self._model.stream(req):
                    if out := rewriter.feed(delta):
                        parts.append(out)
                        yield AnswerEvent(type="token", text=out)
                if tail := rewriter.flush():
                    parts.append(tail)
                    yield AnswerEvent(type="token", text=tail)
                text = "".join(parts)
                grounded = None
                if not is_abstention(text):
                    grounded = ground_renumbered(text, chunks, dict(rewriter.mapping), rewriter.dropped)
                prompt = "".join(m.content for m in req.messages)
                completion = Completion(
                    text=text,
                    model=gen.model,
                    provider=self._model.name,
                    input_tokens=estimate_tokens(prompt),
                    output_tokens=estimate_tokens(text),
                )
                output = generate_output(gen, chunks, completion, grounded)
            self.engine.store.append_event(run.id, gen.id, "completed", output=output)
            final = await self.engine.resume(run.id, principal)
            yield AnswerEvent(type="final", result=self.revealed(principal, self.result_of(final, started)))
        except CairnError as exc:
            # a stream the client saw fail must not be re-run by `recover()` after a restart
            self.engine.store.update_run(run.id, status="failed", reason=f"{exc.code}: {exc.message}")
            yield AnswerEvent(type="error", code=exc.code, message=exc.message)
