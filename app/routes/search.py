from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.deps import ContainerDep, PrincipalDep
from core.errors import InvalidInput
from core.models import SearchFilters

router = APIRouter(prefix="/v1", tags=["search"])


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=5, ge=1, le=100)
    filters: SearchFilters | None = None
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"


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
    page: int | None
    section_path: list[str]


class SearchResponse(BaseModel):
    results: list[SearchResult]


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, principal: PrincipalDep, container: ContainerDep) -> SearchResponse:
    """Hybrid (dense + BM25, fused in the engine) search over what the caller may see."""
    if not body.query.strip():
        raise InvalidInput("query must not be blank", field="query")
    chunks = container.searcher.search(
        principal, body.query, top_k=body.top_k, filters=body.filters, mode=body.mode
    )
    return SearchResponse(results=[SearchResult.model_validate(c.model_dump()) for c in chunks])
