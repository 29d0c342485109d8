"""Public shapes of the answer path (what app/ serialises). The retriever Protocol lives in
core.llm so app/ can implement it without importing orchestration internals."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from core.llm import Retriever

__all__ = ["AnswerEvent", "AnswerResult", "Citation", "Quote", "Retriever"]


class Quote(BaseModel):
    """A verbatim span of a cited chunk; offsets are into the parsed *document*."""

    text: str
    char_start: int
    char_end: int


class Citation(BaseModel):
    n: int  # the [n] marker in the answer text
    doc_id: str
    chunk_id: str
    version: int = 1
    title: str = ""
    source: str = ""
    page: int | None = None
    # the first supporting span; every span the answer relies on is in `quotes`
    quote: str
    char_start: int
    char_end: int
    quotes: list[Quote] = Field(default_factory=list)
    # False when the claim attached to the marker shares no content terms with the chunk
    supported: bool = True
    # e.g. "possible_prompt_injection": the chunk holds instruction-like text (orchestration.injection)
    flags: list[str] = Field(default_factory=list)


class AnswerResult(BaseModel):
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    abstained: bool = False
    run_id: str
    workflow: str = "grounded_qa"
    status: str = "succeeded"  # or awaiting_review / failed / compensated (workflow runs)
    model: str | None = None
    provider: str | None = None
    confidence: float | None = None
    citation_coverage: float = 0.0  # share of answer sentences carrying a valid marker
    groundedness: float = 0.0  # share of markers whose claim is supported by the cited chunk
    retrieved: list[str] = Field(default_factory=list)  # chunk ids handed to the model
    usage: dict[str, Any] = Field(default_factory=dict)  # tokens and cost of the run
    latency_ms: float = 0.0


class AnswerEvent(BaseModel):
    """One server-sent event: `token` deltas (already renumbered, concatenating to the final
    answer unless the run abstains), then exactly one `final` (or `error`)."""

    type: Literal["token", "final", "error"]
    text: str | None = None
    result: AnswerResult | None = None
    code: str | None = None
    message: str | None = None
