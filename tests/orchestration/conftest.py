"""Shared fakes: chunks, a retriever that records who asked, scripted model providers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import pytest

from core.llm import Completion, CompletionRequest
from core.models import Principal, RetrievedChunk, SearchFilters

DOCS = {
    "leave": (
        "Leave policy",
        "Employees receive 25 days of paid annual leave per calendar year. Unused leave of up to "
        "five days may be carried over to the next year. Requests must be approved by a manager "
        "at least two weeks in advance.",
    ),
    "expenses": (
        "Expense policy",
        "Travel expenses are reimbursed within 30 days of submission. Receipts are required for "
        "every expense above 20 euros. Economy class is mandatory for flights under six hours.",
    ),
    "security": (
        "Security handbook",
        "Laptops must use full-disk encryption. Passwords are rotated every 90 days. Report "
        "phishing attempts to the security team immediately.",
    ),
}


def make_chunk(doc_id: str, text: str, *, title: str = "", offset: int = 100, **kw: object) -> RetrievedChunk:
    return RetrievedChunk(
        doc_id=doc_id,
        chunk_id=f"{doc_id}-c0",
        version=1,
        chunk_index=0,
        text=text,
        title=title,
        source="upload",
        char_start=offset,
        char_end=offset + len(text),
        **kw,  # type: ignore[arg-type]
    )


def corpus() -> list[RetrievedChunk]:
    return [make_chunk(d, t, title=title) for d, (title, t) in DOCS.items()]


@dataclass
class FakeRetriever:
    """Ranks chunks by shared words; remembers every principal it was called with."""

    chunks: list[RetrievedChunk] = field(default_factory=corpus)
    calls: list[tuple[Principal, str, int]] = field(default_factory=list)
    params: list[dict[str, str]] = field(default_factory=list)  # the gatherer params of each call
    allowed_docs: set[str] | None = None
    keep_order: bool = False

    async def __call__(
        self,
        principal: Principal,
        query: str,
        *,
        top_k: int,
        filters: SearchFilters | None,
        gatherers: list[str] | None,
        params: Mapping[str, str] | None = None,
    ) -> list[RetrievedChunk]:
        self.calls.append((principal, query, top_k))
        self.params.append(dict(params or {}))
        q = set(query.lower().split())
        visible = [c for c in self.chunks if self.allowed_docs is None or c.doc_id in self.allowed_docs]
        ranked = (
            visible
            if self.keep_order
            else sorted(visible, key=lambda c: -len(q & set(c.text.lower().split())))
        )
        return ranked[:top_k]


@dataclass
class ScriptedProvider:
    """A stand-in for a remote LLM that returns fixed text (split into stream deltas)."""

    text: str
    name: str = "scripted"
    deltas: list[str] | None = None
    requests: list[CompletionRequest] = field(default_factory=list)

    async def complete(self, req: CompletionRequest) -> Completion:
        self.requests.append(req)
        return Completion(
            text=self.text, model=req.model, provider=self.name, input_tokens=10, output_tokens=5
        )

    async def stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        self.requests.append(req)
        for d in self.deltas or [self.text[i : i + 3] for i in range(0, len(self.text), 3)]:
            yield d


@pytest.fixture
def alice() -> Principal:
    return Principal(tenant_id="acme", user="alice", groups=("hr",))
