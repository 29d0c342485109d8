"""`core.llm.Retriever` for the answer path, over `RetrievalService`.

Orchestration asks for chunks only; gatherer failures are partial results here too (logged, and
the answer is grounded in what the other gatherers found), so a slow ticket system never turns a
question into an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from core.models import Principal, RetrievedChunk, SearchFilters
from retrieval.service import RetrievalService

_log = logging.getLogger(__name__)


class ServiceRetriever:
    def __init__(self, service: RetrievalService, *, rerank: bool | None = None) -> None:
        self._service = service
        self._rerank = rerank

    def check_gatherers(self, gatherers: list[str] | None) -> None:
        """Unknown or disabled gatherer names are a 422 before a run starts, not a failed run."""
        for name in gatherers or []:
            self._service.registry.get(name)

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
        result = await self._service.retrieve(
            principal, query, top_k=top_k, filters=filters, gatherers=gatherers, params=params,
            rerank=self._rerank,
        )
        for err in result.errors:
            _log.warning("gatherer %s %s: %s", err.gatherer, err.code, err.message)
        return result.chunks
