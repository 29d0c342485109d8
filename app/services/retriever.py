"""The answer path's view of retrieval: `core.llm.Retriever` over the synchronous searcher.

A small seam on purpose: when a gatherer-aware retrieval service exists, the composition root
swaps this class for it in one line and nothing in orchestration/ or the routes changes.
"""

from __future__ import annotations

import asyncio

from core.errors import InvalidInput
from core.models import Principal, RetrievedChunk, SearchFilters
from retrieval.search import HybridSearcher


class SearcherRetriever:
    """Runs `HybridSearcher.search` in a worker thread: the search embeds the query and calls
    the engine, both blocking, and the event loop must keep serving other requests meanwhile.

    The principal goes through untouched, so the engine applies the caller's tenant and ACL
    filter exactly as `POST /v1/search` does and an answer can never cite more than a search
    would show."""

    def __init__(self, searcher: HybridSearcher) -> None:
        self._searcher = searcher

    def check_gatherers(self, gatherers: list[str] | None) -> None:
        """Refuse named gatherers up front (a 422 before a run starts) rather than silently
        searching the whole index instead of the sources the caller asked for."""
        if gatherers:
            raise InvalidInput(
                f"this server has no named gatherers ({', '.join(gatherers)}); omit `gatherers` "
                "to search the whole index",
                field="gatherers",
            )

    async def __call__(
        self,
        principal: Principal,
        query: str,
        *,
        top_k: int,
        filters: SearchFilters | None,
        gatherers: list[str] | None,
    ) -> list[RetrievedChunk]:
        self.check_gatherers(gatherers)
        return await asyncio.to_thread(self._searcher.search, principal, query, top_k=top_k, filters=filters)
