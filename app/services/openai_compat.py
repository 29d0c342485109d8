"""OpenAI's chat-completions wire format, both directions, so any OpenAI client can talk to
Cairn. Cairn's additions ride along where OpenAI clients keep unknown fields:
`choices[0].message.citations` (and `delta.citations` on the last stream chunk) and a top-level
`cairn` object (run id, abstention, workflow status)."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidInput
from core.llm import ChatMessage
from core.models import SearchFilters
from orchestration.types import AnswerResult, Citation

OPENAI_FINISH = frozenset({"stop", "length", "content_filter", "tool_calls"})


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            if any(p.type != "text" for p in self.content):
                raise InvalidInput("only text content parts are supported", field="messages")
            return "".join(p.text or "" for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    # OpenAI clients send parameters Cairn has no use for (top_p, user, seed, ...): ignored
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int = Field(default=1, ge=1, le=1)
    # Cairn extensions for workflow models (openai SDK: `extra_body={...}`)
    filters: SearchFilters | None = None
    top_k: int | None = Field(default=None, ge=1, le=100)
    gatherers: list[str] | None = None

    def question(self) -> str:
        """A workflow answers the last user message."""
        for m in reversed(self.messages):
            if m.role == "user" and m.text().strip():
                return m.text()
        raise InvalidInput("no user message with text; the last user message is the question")

    def history(self) -> str | None:
        """The turns before the question, for workflows that take `history` (support_assistant)."""
        users = [i for i, m in enumerate(self.messages) if m.role == "user"]
        if not users:
            return None
        turns = [f"{m.role}: {m.text()}" for m in self.messages[: users[-1]] if m.role in ("user", "assistant")]
        return "\n".join(turns) or None

    def chat_messages(self) -> list[ChatMessage]:
        out = []
        for m in self.messages:
            if m.role == "tool":
                raise InvalidInput("tool messages are not supported", field="messages")
            role: Literal["system", "user", "assistant"] = "system" if m.role == "developer" else m.role
            out.append(ChatMessage(role=role, content=m.text()))
        return out

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    citations: list[Citation] = Field(default_factory=list)


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str = "stop"


class ChatUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CairnExtras(BaseModel):
    run_id: str | None = None
    workflow: str | None = None
    status: str | None = None
    abstained: bool = False
    provider: str | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: ChatUsage
    cairn: CairnExtras


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str  # cairn-workflow | cairn-alias


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def usage(input_tokens: int, output_tokens: int) -> ChatUsage:
    return ChatUsage(
        prompt_tokens=input_tokens, completion_tokens=output_tokens, total_tokens=input_tokens + output_tokens
    )


def finish_reason(reason: str) -> str:
    return reason if reason in OPENAI_FINISH else "stop"


def from_answer(model: str, result: AnswerResult) -> ChatCompletion:
    u = result.usage
    return ChatCompletion(
        id=f"chatcmpl-{result.run_id}",
        created=int(time.time()),
        model=model,
        choices=[Choice(message=AssistantMessage(content=result.answer, citations=result.citations))],
        usage=usage(int(u.get("input_tokens", 0)), int(u.get("output_tokens", 0))),
        cairn=extras(result),
    )


def extras(result: AnswerResult) -> CairnExtras:
    return CairnExtras(
        run_id=result.run_id,
        workflow=result.workflow,
        status=result.status,
        abstained=result.abstained,
        provider=result.provider,
    )


def chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; `delta=None` is the trailing usage chunk (no choices)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **extra,
    }


def error(code: str, message: str) -> dict[str, Any]:
    """What OpenAI sends inside a stream when it fails; the openai SDK raises it as APIError."""
    return {"error": {"message": message, "type": code, "code": code}}
