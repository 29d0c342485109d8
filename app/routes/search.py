"""`POST /v1/search` (gatherers -> merge -> rerank -> dedupe) and `GET /v1/gatherers`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.deps import ContainerDep, PrincipalDep, audited
from app.services.audit import AuditNote
from core.models import SearchFilters

router = APIRouter(prefix="/v1", tags=["search"])


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(
        default=None, ge=1, le=100, description="default: CAIRN_SEARCH__DEFAULT_TOP_K (5)"
    )
    filters: SearchFilters | None = None
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    gatherers: list[str] | None = Field(
        default=None, max_length=16, description="gatherers to run (GET /v1/gatherers); default: all"
    )
    params: dict[str, str] = Field(
        default_factory=dict,
        description='values for gatherer filter placeholders, e.g. {"customer_id": "acme"}',
    )
    rerank: bool | None = Field(default=None, description="default: CAIRN_SEARCH__RERANK")
    explain: bool = False
    context_tokens: int | None = Field(
        default=None,
        ge=16,
        le=100_000,
        description="also pack the results into a context of this many tokens",
    )


class SearchResult(BaseModel):
    doc_id: str
    chunk_id: str
    version: int
    chunk_index: int
    text: str
    score: float
    char_start: int
    char_end: int
    title: str
    source: str
    page: int | None = None
    section_path: list[str]
    gatherer: str | None = None


class GathererErrorOut(BaseModel):
    gatherer: str
    code: str
    message: str


class ContextCitation(BaseModel):
    n: int
    doc_id: str
    chunk_id: str
    title: str
    char_start: int
    char_end: int


class ContextOut(BaseModel):
    text: str
    tokens: int
    budget: int
    citations: list[ContextCitation]


class SearchResponse(BaseModel):
    results: list[SearchResult]
    gatherer_errors: list[GathererErrorOut] = Field(default_factory=list)
    explain: dict[str, Any] | None = None
    context: ContextOut | None = None


@router.post("/search", response_model=SearchResponse, response_model_exclude_none=True)
async def search(
    body: SearchRequest, principal: PrincipalDep, container: ContainerDep,
    audit: Annotated[AuditNote, audited("search")],
) -> SearchResponse:
    """Search what the caller may read. A gatherer that fails or times out is reported in
    `gatherer_errors` while the others' results are returned; an unknown gatherer is a 422
    (`unknown_gatherer`)."""
    result = await container.retrieval.retrieve(
        principal,
        body.query,
        top_k=body.top_k,
        filters=body.filters,
        gatherers=body.gatherers,
        params=body.params,
        rerank=body.rerank,
        explain=body.explain,
        mode=body.mode,
        context_tokens=body.context_tokens,
    )
    audit.chunks(result.chunks)
    context = None
    if result.context is not None:
        w = result.context
        context = ContextOut(
            text=w.text,
            tokens=w.tokens,
            budget=w.budget,
            citations=[
                ContextCitation(
                    n=it.n,
                    doc_id=it.chunk.doc_id,
                    chunk_id=it.chunk.chunk_id,
                    title=it.chunk.title,
                    char_start=it.chunk.char_start,
                    char_end=it.chunk.char_end,
                )
                for it in w.items
            ],
        )
    return SearchResponse(
        results=[SearchResult.model_validate(c.model_dump()) for c in result.chunks],
        gatherer_errors=[
            GathererErrorOut(gatherer=e.gatherer, code=e.code, message=e.message) for e in result.errors
        ],
        explain=result.explain,
        context=context,
    )


class GathererOut(BaseModel):
    name: str
    description: str
    top_k: int
    timeout_s: float
    weight: float
    params: list[str]


@router.get("/gatherers")
def list_gatherers(_principal: PrincipalDep, container: ContainerDep) -> dict[str, list[GathererOut]]:
    """The enabled gatherers a search request (or workflow) can name."""
    specs = [s for s in container.retrieval.registry.specs() if s.enabled]
    return {
        "data": [
            GathererOut(
                name=s.name,
                description=s.description,
                top_k=s.top_k,
                timeout_s=s.timeout_s,
                weight=s.weight,
                params=sorted(s.params),
            )
            for s in specs
        ]
    }
