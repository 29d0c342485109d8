"""Contracts between the answer path and the models behind it.

Every model call, local or remote, goes through one request / response shape so the gateway can
route, account for and fall back between providers without knowing which one it is talking to.
`context` travels as structured chunks (not only as prompt text) because the local extractive
provider answers from chunks directly and because routing decisions depend on their policy tags.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from core.models import Principal, RetrievedChunk, SearchFilters

# finish_reason a provider uses to say "the context does not answer this" (an abstention).
INSUFFICIENT_EVIDENCE = "insufficient_evidence"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class CompletionRequest(BaseModel):
    """One model call. `model` is an alias (`fast`, `accurate`, ...) at the gateway and a concrete
    model name once the gateway has picked a provider."""

    model: str = "local"
    messages: list[ChatMessage] = Field(default_factory=list)
    max_tokens: int = Field(default=512, ge=1, le=200_000)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    # numbered sources: marker [n] in the output refers to context[n - 1]
    context: list[RetrievedChunk] = Field(default_factory=list)
    # data classification of everything in the prompt; the gateway only routes to providers
    # allowed for every tag (the union of the request's and the context chunks' tags)
    policy_tags: list[str] = Field(default_factory=list)
    # the question the output must address; local providers score sentences against it, remote
    # providers ignore it because it is already rendered into `messages`
    query: str | None = None
    # attribution for cost accounting and budgets
    tenant_id: str | None = None
    workflow: str | None = None
    step: str | None = None

    def all_policy_tags(self) -> set[str]:
        tags = set(self.policy_tags)
        for chunk in self.context:
            tags.update(chunk.policy_tags)
        return tags


class Completion(BaseModel):
    text: str
    model: str
    provider: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    finish_reason: str = "stop"
    # providers that can estimate how well the context supports the text set this (0..1)
    confidence: float | None = None

    @property
    def abstained(self) -> bool:
        return self.finish_reason == INSUFFICIENT_EVIDENCE


@runtime_checkable
class ModelProvider(Protocol):
    """A model backend. The gateway implements the same Protocol, so services accept either."""

    name: str

    async def complete(self, req: CompletionRequest) -> Completion: ...

    def stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        """Text deltas; raises core.errors.Unavailable (or a subclass) when the stream fails."""
        ...


class Retriever(Protocol):
    """The query path as orchestration sees it. ACL filtering happens inside: orchestration
    passes the principal through and may only cite chunks this returned for that principal."""

    async def __call__(
        self,
        principal: Principal,
        query: str,
        *,
        top_k: int,
        filters: SearchFilters | None,
        gatherers: list[str] | None,
        params: Mapping[str, str] | None = None,
    ) -> list[RetrievedChunk]: ...
