"""Executors for the step types that do work (gather, generate, validate, branch, action).

Each returns a JSON-able dict: that dict is what the event log records and what a resumed run
replays, so nothing a later step needs may live only in memory.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidInput
from core.llm import ChatMessage, Completion, CompletionRequest, ModelProvider, Retriever
from core.models import Principal, RetrievedChunk, SearchFilters
from orchestration.citations import GroundedText, ground
from orchestration.grounded import NOT_FOUND, decide, grounded_messages, is_abstention, render_sources
from orchestration.injection import SOURCES_ARE_DATA
from orchestration.workflows._jsonschema import schema_errors
from orchestration.workflows.expressions import evaluate, render
from orchestration.workflows.spec import ActionStep, BranchStep, GatherStep, GenerateStep, ValidateStep

Action = Callable[[dict[str, Any], "StepContext"], Awaitable[dict[str, Any]]]


@dataclass
class StepContext:
    run_id: str
    workflow: str
    principal: Principal
    inputs: dict[str, Any]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def env(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "steps": self.outputs}

    def chunks(self, context: str | list[str] | None) -> list[RetrievedChunk]:
        return [RetrievedChunk.model_validate(c) for c in context_chunks(self.outputs, context)]


def context_chunks(outputs: Mapping[str, Mapping[str, Any]], context: str | list[str] | None) -> list[dict[str, Any]]:
    """The numbered sources of a generate step: the chunks of its context gather step(s) in
    order, a chunk found by two of them counted once (where it first appears)."""
    steps = [context] if isinstance(context, str) else context or []
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for step_id in steps:
        for c in outputs.get(step_id, {}).get("chunks", []):
            if c["chunk_id"] not in seen:
                seen.add(c["chunk_id"])
                out.append(c)
    return out


async def run_gather(step: GatherStep, ctx: StepContext, retriever: Retriever) -> dict[str, Any]:
    query = render(step.query, ctx.env()).strip()
    if not query:
        raise InvalidInput(f"step {step.id!r}: the query rendered empty; pass `question` in the inputs")
    raw_filters = ctx.inputs.get("filters")
    filters = SearchFilters.model_validate(raw_filters) if raw_filters else None
    top_k = step.top_k or int(ctx.inputs.get("top_k") or 5)
    gatherers = step.gatherers or ctx.inputs.get("gatherers")
    env = ctx.env()
    params = {k: v for k, v in ((k, render(t, env).strip()) for k, t in step.params.items()) if v}
    chunks = await retriever(
        ctx.principal, query, top_k=top_k, filters=filters, gatherers=gatherers, params=params or None
    )
    return {"query": query, "count": len(chunks), "chunks": [c.model_dump(mode="json") for c in chunks]}


def _messages(
    step: GenerateStep, env: dict[str, Any], chunks: list[RetrievedChunk], prompt: str
) -> list[ChatMessage]:
    if step.system is None and step.cite:
        return grounded_messages(prompt, chunks)
    system = render(step.system, env) if step.system else ""
    if chunks:
        system = f"{system}\n\n{SOURCES_ARE_DATA}\n\nSources:\n{render_sources(chunks)}".strip()
    return [
        *([ChatMessage(role="system", content=system)] if system else []),
        ChatMessage(role="user", content=prompt),
    ]


def generate_request(step: GenerateStep, ctx: StepContext, *, alias: str | None = None) -> CompletionRequest:
    env = ctx.env()
    chunks = ctx.chunks(step.context)
    prompt = render(step.prompt, env)
    return CompletionRequest(
        model=alias or step.model,
        messages=_messages(step, env, chunks, prompt),
        max_tokens=step.max_tokens,
        temperature=step.temperature,
        timeout_s=step.timeout_s,
        context=chunks,
        query=render(step.query, env) if step.query else prompt,
        tenant_id=ctx.principal.tenant_id,
        workflow=ctx.workflow,
        step=step.id,
    )


NO_CONTEXT: dict[str, Any] = {
    "text": "",
    "answer": NOT_FOUND,
    "citations": [],
    "abstained": True,
    "reason": "no_context",
}


def generate_output(
    step: GenerateStep, chunks: list[RetrievedChunk], c: Completion, grounded: GroundedText | None = None
) -> dict[str, Any]:
    """What a generate step records; `grounded` comes from the streaming path's own rewriter."""
    out: dict[str, Any] = {
        "text": c.text,
        "model": c.model,
        "provider": c.provider,
        "finish_reason": c.finish_reason,
        "confidence": c.confidence,
        "usage": {"input_tokens": c.input_tokens, "output_tokens": c.output_tokens, "cost_usd": c.cost_usd},
    }
    if step.cite:
        d = decide(c.text, chunks, finish_reason=c.finish_reason, grounded=grounded)
        out |= {
            "answer": d.answer,
            "citations": [x.model_dump(mode="json") for x in d.citations],
            "abstained": d.abstained,
            "reason": d.reason,
            "citation_coverage": d.coverage,
            "groundedness": d.groundedness,
        }
    else:
        abstained = is_abstention(c.text, c.finish_reason)
        out |= {"answer": NOT_FOUND if abstained else c.text, "citations": [], "abstained": abstained}
    return out


async def run_generate(
    step: GenerateStep, ctx: StepContext, model: ModelProvider, *, alias: str | None = None
) -> dict[str, Any]:
    chunks = ctx.chunks(step.context)
    if step.cite and not chunks:  # nothing visible to this caller: no model call, no answer
        return dict(NO_CONTEXT)
    c = await model.complete(generate_request(step, ctx, alias=alias))
    return generate_output(step, chunks, c)


def check_output(step: ValidateStep, target: Mapping[str, Any]) -> list[str]:
    failures: list[str] = []
    for check in step.checks:
        if check.kind == "not_abstained":
            if target.get("abstained"):
                failures.append("the answer is an abstention")
        elif check.kind == "json_schema":
            try:
                value = json.loads(str(target.get("text", "")))
            except json.JSONDecodeError:
                failures.append("output is not JSON")
                continue
            failures.extend(schema_errors(value, check.schema_ or {}))
        else:
            got = target.get(check.kind)
            if not isinstance(got, int | float) or got < (check.min or 0.0):
                failures.append(f"{check.kind} {got} is below {check.min}")
    return failures


_ANSWER_FIELDS = (
    "answer", "citations", "abstained", "reason", "confidence",
    "model", "provider", "citation_coverage", "groundedness",
)  # fmt: skip


def run_validate(step: ValidateStep, ctx: StepContext) -> dict[str, Any]:
    target = ctx.outputs.get(step.target, {})
    failures = check_output(step, target)
    out: dict[str, Any] = {k: target[k] for k in _ANSWER_FIELDS if k in target}
    out |= {"passed": not failures, "failures": failures}
    if failures and step.on_fail == "abstain":
        out |= {"answer": NOT_FOUND, "citations": [], "abstained": True, "reason": "quality_gate"}
    return out


def run_branch(step: BranchStep, ctx: StepContext) -> dict[str, Any]:
    env = ctx.env()
    for case in step.cases:
        if evaluate(case.when, env):
            return {"goto": case.goto}
    return {"goto": step.default}


def render_params(params: Mapping[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    return {k: render(v, env) if isinstance(v, str) else v for k, v in params.items()}


async def run_action(step: ActionStep, ctx: StepContext, actions: Mapping[str, Action]) -> dict[str, Any]:
    if step.action not in actions:
        raise InvalidInput(f"step {step.id!r} calls action {step.action!r}, which is not registered")
    return await actions[step.action](render_params(step.with_, ctx.env()), ctx)


def edited_output(target: dict[str, Any], text: str, chunks: list[RetrievedChunk]) -> dict[str, Any]:
    """A reviewer's edit replaces the answer; its markers are re-verified against the sources."""
    g = ground(text, chunks)
    return {
        **target,
        "text": text,
        "answer": g.answer.strip(),
        "citations": [c.model_dump(mode="json") for c in g.citations],
        "abstained": False,
        "edited": True,
    }
