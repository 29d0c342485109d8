"""OpenAI-compatible endpoints: `POST /v1/chat/completions` and `GET /v1/models`.

`model` is either a workflow name (`grounded_qa`, `support_assistant`: a grounded, cited answer
to the last user message, recorded as a run exactly like `POST /v1/answers`) or a gateway alias
(`fast`, `accurate`, `local`, ...: a plain model call through routing, fallback and budgets).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from app.container import Container
from app.deps import ContainerDep, PrincipalDep, audited
from app.routes import _sse
from app.services import openai_compat as oc
from app.services.audit import AuditNote
from core.errors import NotFound
from core.llm import CompletionRequest
from core.models import Principal
from orchestration.types import AnswerEvent

router = APIRouter(prefix="/v1", tags=["chat"])


def _kind(container: Container, model: str) -> Literal["workflow", "alias"]:
    if model in {w.name for w in container.answers.engine.registry.list()}:
        return "workflow"
    config = container.gateway.config
    if model in config.aliases or model in config.providers:
        return "alias"
    raise NotFound(f"no model {model!r}: use a workflow name or a model alias (GET /v1/models lists them)")


@router.get("/models", response_model=oc.ModelList)
def list_models(_principal: PrincipalDep, container: ContainerDep) -> oc.ModelList:
    """What `model` may be: workflows (cited answers from the knowledge base) and aliases."""
    workflows = [oc.ModelCard(id=w.name, owned_by="cairn-workflow") for w in container.answers.engine.registry.list()]
    aliases = [oc.ModelCard(id=a, owned_by="cairn-alias") for a in sorted(container.gateway.config.aliases)]
    return oc.ModelList(data=[*workflows, *aliases])


@router.post(
    "/chat/completions",
    response_model=oc.ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or chunks when streaming"}},
)
async def chat_completions(
    body: oc.ChatRequest, principal: PrincipalDep, container: ContainerDep,
    audit: Annotated[AuditNote, audited("answer")],
) -> oc.ChatCompletion | StreamingResponse:
    """OpenAI's chat-completions API. For a workflow model the answer's `[n]` markers refer to
    `choices[0].message.citations[].n` (verified quotes, as in `POST /v1/answers`), `cairn.run_id`
    names the run, and `filters` / `top_k` / `gatherers` may be sent as extra body fields;
    `max_tokens` and `temperature` apply to alias models only (a workflow's steps set their own).

    With `stream: true` the response is `chat.completion.chunk` events: a first chunk with the
    role, content deltas, a last chunk with `finish_reason: "stop"` (for workflows also
    `delta.citations` and `cairn`), a usage chunk when `stream_options.include_usage`, then
    `data: [DONE]`. A failure after the stream started is sent as `data: {"error": {...}}` and
    the stream ends without `[DONE]`."""
    audit.details["api"] = "chat.completions"
    if _kind(container, body.model) == "workflow":
        return await _workflow(body, principal, container, audit)
    audit.models = [body.model]  # an alias call: no retrieval, nothing cited
    return await _alias(body, principal, container)


def _on_error(code: str, message: str) -> bytes:
    return _sse.encode(oc.error(code, message))


async def _workflow(
    body: oc.ChatRequest, principal: Principal, container: Container, audit: AuditNote
) -> oc.ChatCompletion | StreamingResponse:
    container.retriever.check_gatherers(body.gatherers)
    history = body.history()
    args = (principal, body.question(), body.model, body.gatherers, body.filters, body.top_k)
    inputs = {"history": history} if history else None
    if body.stream:
        events = audit.follow(container.answers.stream(*args, inputs=inputs))
        return _sse.event_stream(_workflow_chunks(body, events), _on_error)
    return oc.from_answer(body.model, audit.answer(await container.answers.answer(*args, inputs=inputs)))


async def _workflow_chunks(body: oc.ChatRequest, events: AsyncIterator[AnswerEvent]) -> AsyncIterator[bytes]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        return _sse.encode(oc.chunk(cid, body.model, created, delta, finish, **extra))

    yield chunk({"role": "assistant", "content": ""})
    streamed = False
    async for e in events:
        if e.type == "token" and e.text:
            streamed = True
            yield chunk({"content": e.text})
        elif e.type == "final" and e.result is not None:
            r = e.result
            if not streamed:  # abstentions and non-streaming workflows arrive only as the final
                yield chunk({"content": r.answer})
            citations = [c.model_dump(mode="json") for c in r.citations]
            yield chunk({"citations": citations}, "stop", cairn=oc.extras(r).model_dump())
            if body.stream_options and body.stream_options.include_usage:
                u = oc.usage(int(r.usage.get("input_tokens", 0)), int(r.usage.get("output_tokens", 0)))
                yield chunk(None, usage=u.model_dump())
        else:
            yield _on_error(e.code or "internal_error", e.message or "the answer failed")
            return
    yield _sse.encode("[DONE]")


def _request(body: oc.ChatRequest, principal: Principal) -> CompletionRequest:
    return CompletionRequest(
        model=body.model,
        messages=body.chat_messages(),
        max_tokens=body.token_limit or 1024,
        temperature=body.temperature or 0.0,
        tenant_id=principal.tenant_id,
        workflow="chat",
        step="completion",
    )


async def _alias(
    body: oc.ChatRequest, principal: Principal, container: Container
) -> oc.ChatCompletion | StreamingResponse:
    req = _request(body, principal)
    gateway = container.gateway
    if body.stream:
        gateway.chain(req)  # policy, budget and alias errors become a 4xx before the stream starts
        return _sse.event_stream(_alias_chunks(body, req, container), _on_error)
    c = await gateway.complete(req)
    return oc.ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model,
        choices=[
            oc.Choice(message=oc.AssistantMessage(content=c.text), finish_reason=oc.finish_reason(c.finish_reason))
        ],
        usage=oc.usage(c.input_tokens, c.output_tokens),
        cairn=oc.CairnExtras(provider=c.provider, abstained=c.abstained),
    )


async def _alias_chunks(body: oc.ChatRequest, req: CompletionRequest, container: Container) -> AsyncIterator[bytes]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        return _sse.encode(oc.chunk(cid, body.model, created, delta, finish, **extra))

    yield chunk({"role": "assistant", "content": ""})
    produced = 0
    async for delta in container.gateway.stream(req):
        produced += len(delta)
        yield chunk({"content": delta})
    yield chunk({}, "stop")
    if body.stream_options and body.stream_options.include_usage:
        # estimated (about four characters a token): a stream reports no token counts
        prompt = sum(len(m.content) for m in req.messages)
        yield chunk(None, usage=oc.usage(-(-prompt // 4), -(-produced // 4)).model_dump())
    yield _sse.encode("[DONE]")
