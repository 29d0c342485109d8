"""The query path for one request: principal -> engine filter -> hybrid query -> chunks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from core.models import (
    AccessScope,
    IndexFilter,
    IndexHit,
    IndexQuery,
    Principal,
    RetrievedChunk,
    SearchFilters,
    SparseVector,
)
from core.protocols import Embedder, SparseEncoder, VectorIndex
from retrieval.filters import build_index_filter

SearchMode = Literal["hybrid", "dense", "sparse"]
T = TypeVar("T")


def to_chunk(hit: IndexHit) -> RetrievedChunk:
    p: dict[str, Any] = hit.payload
    return RetrievedChunk(
        doc_id=p["doc_id"],
        chunk_id=hit.id,
        version=int(p["version"]),
        chunk_index=int(p["chunk_index"]),
        text=p["text"],
        title=p.get("title") or "",
        source=p.get("source") or "",
        char_start=int(p["char_start"]),
        char_end=int(p["char_end"]),
        page=p.get("page"),
        section_path=list(p.get("section_path") or []),
        score=hit.score,
        policy_tags=list(p.get("policy_tags") or []),
        tags=list(p.get("tags") or []),
    )


def keep_newest(items: list[T], doc_version: Callable[[T], tuple[str, int]]) -> list[T]:
    """Drop items of a document's older version when a newer one is also in the list.

    A re-version writes the new chunks before it deletes the old ones (so a search never sees
    neither); this is the other half, so one response never mixes both.
    """
    keyed = [(doc_version(item), item) for item in items]
    newest: dict[str, int] = {}
    for (doc, ver), _ in keyed:
        newest[doc] = max(ver, newest.get(doc, -1))
    return [item for (doc, ver), item in keyed if newest[doc] == ver]


def keep_newest_versions(hits: list[IndexHit]) -> list[IndexHit]:
    """`keep_newest` over engine hits (doc id and version from the payload)."""
    return keep_newest(hits, lambda h: (h.payload["doc_id"], int(h.payload["version"])))


@dataclass(frozen=True)
class EncodedQuery:
    """A query's vectors, computed once per request and shared by every gatherer."""

    text: str
    dense: list[float] | None
    sparse: SparseVector | None


class HybridSearcher:
    def __init__(
        self,
        embedder: Embedder,
        sparse: SparseEncoder,
        index: VectorIndex,
        *,
        prefetch_limit: int = 50,
        rrf_k: int = 60,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._embedder = embedder
        self._sparse = sparse
        self._index = index
        self._prefetch_limit = prefetch_limit
        self._rrf_k = rrf_k
        self._clock = clock

    @property
    def index(self) -> VectorIndex:
        return self._index

    @property
    def prefetch_limit(self) -> int:
        return self._prefetch_limit

    @property
    def rrf_k(self) -> int:
        return self._rrf_k

    def encode(self, query: str, mode: SearchMode = "hybrid") -> EncodedQuery:
        dense = self._embedder.embed_query(query) if mode in ("hybrid", "dense") else None
        sparse = self._sparse.encode_query(query) if mode in ("hybrid", "sparse") else None
        if sparse is not None and not sparse.indices:
            # nothing but stopwords: a sparse prefetch would match nothing, dense still can
            sparse = None
            if dense is None:
                dense = self._embedder.embed_query(query)
        return EncodedQuery(query, dense, sparse)

    def base_filter(self, filters: SearchFilters | None) -> IndexFilter:
        """The request's filters, with the effective-date window at `as_of` or now."""
        return build_index_filter(filters, self._clock())

    def build_query(
        self,
        principal: Principal,
        query: str,
        *,
        top_k: int,
        filters: SearchFilters | None = None,
        mode: SearchMode = "hybrid",
    ) -> IndexQuery:
        encoded = self.encode(query, mode)
        return IndexQuery(
            scope=AccessScope.of(principal),
            filter=self.base_filter(filters),
            dense=encoded.dense,
            sparse=encoded.sparse,
            # room for the older-version hits that keep_newest_versions may drop
            limit=top_k * 2,
            prefetch_limit=max(self._prefetch_limit, top_k * 2),
            rrf_k=self._rrf_k,
        )

    def search(
        self,
        principal: Principal,
        query: str,
        *,
        top_k: int = 5,
        filters: SearchFilters | None = None,
        mode: SearchMode = "hybrid",
    ) -> list[RetrievedChunk]:
        q = self.build_query(principal, query, top_k=top_k, filters=filters, mode=mode)
        hits = keep_newest_versions(self._index.query(q))[:top_k]
        return [to_chunk(h) for h in hits]
