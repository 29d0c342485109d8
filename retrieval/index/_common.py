"""Engine-neutral rules both index adapters share, so the two cannot drift apart.

The adapters only translate; what a read may see, which points a delete touches and which
queries are valid are decided here, once, as pure functions over `core.models` types.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from core.errors import InvalidInput
from core.models import (
    FLOAT_PAYLOAD_FIELDS,
    INTEGER_PAYLOAD_FIELDS,
    KEYWORD_PAYLOAD_FIELDS,
    TENANT_FIELD,
    AccessScope,
    Condition,
    IndexFilter,
    IndexHit,
    IndexQuery,
    MatchAny,
    Range,
)

DENSE = "dense"
SPARSE = "sparse"
ACL_FIELD = "acl"
DOC_FIELD = "doc_id"
VERSION_FIELD = "version"
CHUNK_INDEX_FIELD = "chunk_index"
SCROLL_PAGE = 1_000

IndexKind = Literal["tenant", "keyword", "integer", "float"]


def payload_indexes() -> list[tuple[str, IndexKind]]:
    """Every payload field a filter runs on, so no filter ever scans payloads."""
    return [
        (TENANT_FIELD, "tenant"),
        *((f, "keyword") for f in KEYWORD_PAYLOAD_FIELDS),
        *((f, "integer") for f in INTEGER_PAYLOAD_FIELDS),
        *((f, "float") for f in FLOAT_PAYLOAD_FIELDS),
    ]


def scoped(scope: AccessScope, extra: IndexFilter | None = None) -> IndexFilter:
    """The only way an adapter builds a read filter: tenant AND ACL first, user filter after.

    `AccessScope` refuses to exist without a tenant and a principal, so the result always
    carries both clauses; user filters can only narrow it.
    """
    base: tuple[MatchAny, ...] = (
        MatchAny(TENANT_FIELD, (scope.tenant_id,)),
        MatchAny(ACL_FIELD, tuple(scope.principals)),
    )
    if extra is None:
        return IndexFilter(must=base)
    return IndexFilter(must=base + extra.must, must_not=extra.must_not)


def tenant_only(tenant_id: str) -> IndexFilter:
    """The IDF corpus of a tenant: its whole collection, not just what the caller may read, so
    one user's BM25 scores do not depend on which documents they happen to see."""
    return IndexFilter(must=(MatchAny(TENANT_FIELD, (tenant_id,)),))


def versions_filter(
    tenant_id: str, doc_id: str, below: int | None = None, only: int | None = None
) -> IndexFilter:
    """Points of one document of one tenant: every version, versions older than `below` (the
    swap after a new version is indexed) or just version `only` (a failed or losing ingest)."""
    if not tenant_id or not doc_id:
        raise InvalidInput("deleting a document's chunks needs both tenant_id and doc_id")
    if below is not None and only is not None:
        raise InvalidInput("pass at most one of below= and only= when deleting versions")
    must: tuple[Condition, ...] = (MatchAny(TENANT_FIELD, (tenant_id,)), MatchAny(DOC_FIELD, (doc_id,)))
    if below is not None:
        must += (Range(VERSION_FIELD, lt=below),)
    elif only is not None:
        must += (MatchAny(VERSION_FIELD, (only,)),)
    return IndexFilter(must=must)


def chunk_filter(doc_id: str, version: int | None) -> IndexFilter:
    conds = [MatchAny(DOC_FIELD, (doc_id,))]
    if version is not None:
        conds.append(MatchAny(VERSION_FIELD, (version,)))
    return IndexFilter(must=tuple(conds))


def point_ids(ids: Iterable[str]) -> list[str]:
    """Canonical, de-duplicated UUID strings; anything that is not a UUID cannot be a chunk id
    (`core.models.chunk_id`) and is dropped rather than sent to the engine to fail there."""
    out: dict[str, None] = {}
    for raw in ids:
        try:
            out[str(uuid.UUID(str(raw)))] = None
        except ValueError:
            continue
    return list(out)


def hit(record: Any, vectors: bool = False) -> IndexHit:
    """An `IndexHit` from a point / record of either engine (with its dense vector if read)."""
    dense = None
    if vectors and isinstance(record.vector, dict):
        vec = record.vector.get(DENSE)
        dense = vec if isinstance(vec, list) else None
    return IndexHit(str(record.id), float(getattr(record, "score", 0.0)), record.payload or {}, dense)


def validate_query(q: IndexQuery, dense_dim: int) -> None:
    """Reject queries an engine would answer wrongly or with an opaque vendor error."""
    if q.dense is None and q.sparse is None:
        raise InvalidInput("an index query needs a dense vector, a sparse vector or both")
    if q.limit < 1 or q.prefetch_limit < 1:
        raise InvalidInput(f"limit and prefetch_limit must be >= 1, got {q.limit} and {q.prefetch_limit}")
    if q.dense is not None and len(q.dense) != dense_dim:
        raise InvalidInput(f"dense query vector has {len(q.dense)} dimensions, the index expects {dense_dim}")
    if q.sparse is not None and len(q.sparse.indices) != len(q.sparse.values):
        raise InvalidInput("sparse query vector has different numbers of indices and values")
    if q.fusion == "rrf" and q.rrf_k < 1:
        raise InvalidInput(f"rrf_k must be >= 1, got {q.rrf_k}")
    if q.weights is not None:
        if q.fusion != "rrf":
            raise InvalidInput(
                "fusion weights are only supported with fusion='rrf' (Qdrant has no weighted DBSF)"
            )
        if len(q.weights) != 2 or any(w < 0 for w in q.weights):
            raise InvalidInput(f"weights must be two non-negative numbers (dense, sparse), got {q.weights}")


def is_hybrid(q: IndexQuery) -> bool:
    return q.dense is not None and q.sparse is not None


def in_chunk_order(hits: Sequence[IndexHit]) -> list[IndexHit]:
    return sorted(hits, key=lambda h: (h.payload.get(VERSION_FIELD, 0), h.payload.get(CHUNK_INDEX_FIELD, 0)))


def in_request_order(hits: Iterable[IndexHit], ids: Sequence[str]) -> list[IndexHit]:
    by_id = {h.id: h for h in hits}
    return [by_id[i] for i in ids if i in by_id]
