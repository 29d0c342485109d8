"""Retrieval configurations an evaluation compares, and how one query is run under each.

Plain configurations (sparse, dense, hybrid with fusion weights) query the engine directly through
the `HybridSearcher`'s own query building, so they measure exactly the engine's ranking under the
caller's tenant + ACL scope. A configuration with `rerank` goes through the full retrieval service
(gatherers -> merge -> rerank -> dedupe) when the composition root offers one; without it such a
configuration is refused up front instead of silently measuring something else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import InvalidInput
from core.models import Principal, SearchFilters
from retrieval.search import HybridSearcher, keep_newest_versions


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.+\-]{1,64}$")
    mode: Literal["sparse", "dense", "hybrid"] = "hybrid"
    fusion: Literal["rrf", "dbsf"] = "rrf"
    dense_weight: float = Field(default=1.0, ge=0, le=10)
    sparse_weight: float = Field(default=1.0, ge=0, le=10)
    rerank: bool = False

    @model_validator(mode="after")
    def _weights_need_rrf(self) -> EvalConfig:
        if self.fusion == "dbsf" and (self.dense_weight, self.sparse_weight) != (1.0, 1.0):
            raise ValueError("fusion weights apply to fusion='rrf' only (the engine has no weighted DBSF)")
        return self


PRESETS: dict[str, EvalConfig] = {
    "sparse": EvalConfig(name="sparse", mode="sparse"),
    "dense": EvalConfig(name="dense", mode="dense"),
    "hybrid": EvalConfig(name="hybrid", mode="hybrid"),
    "hybrid-dbsf": EvalConfig(name="hybrid-dbsf", mode="hybrid", fusion="dbsf"),
    "hybrid+rerank": EvalConfig(name="hybrid+rerank", mode="hybrid", rerank=True),
    # the server's defaults (core/settings.py SearchSettings: DBSF fusion, then the reranker)
    "hybrid-dbsf+rerank": EvalConfig(name="hybrid-dbsf+rerank", mode="hybrid", fusion="dbsf", rerank=True),
}
DEFAULT_CONFIGS = ("sparse", "dense", "hybrid")


def resolve_configs(items: list[str | EvalConfig], rerank_available: bool) -> list[EvalConfig]:
    configs: list[EvalConfig] = []
    for item in items:
        if isinstance(item, str):
            if item not in PRESETS:
                raise InvalidInput(f"unknown configuration {item!r}; presets: {', '.join(PRESETS)}", field="configs")
            item = PRESETS[item]
        if item.rerank and not rerank_available:
            raise InvalidInput(
                f"configuration {item.name!r} needs a reranker, and this server's retrieval service has none",
                field="configs",
            )
        configs.append(item)
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise InvalidInput("configuration names must be unique", field="configs")
    if not configs:
        raise InvalidInput("give at least one configuration", field="configs")
    return configs


def distinct_docs(doc_ids: list[str], depth: int) -> list[str]:
    """Chunk ranking -> document ranking: a document ranks where its best chunk does (MaxP)."""
    seen: dict[str, None] = {}
    for d in doc_ids:
        seen.setdefault(d, None)
        if len(seen) == depth:
            break
    return list(seen)


class ConfigSearch:
    """Ranks documents for one query under one configuration, as a given principal."""

    def __init__(self, searcher: HybridSearcher, retrieval: Callable[[], Any | None]) -> None:
        self._searcher = searcher
        self._retrieval = retrieval

    @property
    def rerank_available(self) -> bool:
        return self._retrieval() is not None

    def rank(
        self, principal: Principal, query: str, config: EvalConfig, filters: SearchFilters, depth: int
    ) -> list[str]:
        # chunks, not documents, come back: ask for enough that `depth` distinct documents survive
        chunk_limit = depth * 3
        if config.rerank:
            service = self._retrieval()
            if service is None:
                raise InvalidInput("the retrieval service with a reranker is not available")
            result = asyncio.run(
                service.retrieve(principal, query, top_k=chunk_limit, filters=filters, rerank=True, mode=config.mode)
            )
            return distinct_docs([c.doc_id for c in result.chunks], depth)
        q = self._searcher.build_query(principal, query, top_k=chunk_limit, filters=filters, mode=config.mode)
        weights = (config.dense_weight, config.sparse_weight)
        q = replace(
            q,
            fusion=config.fusion,
            weights=None if weights == (1.0, 1.0) or config.mode != "hybrid" else weights,
        )
        hits = keep_newest_versions(self._searcher.index.query(q))
        return distinct_docs([h.payload["doc_id"] for h in hits], depth)
