"""`VectorIndex` on the embedded Qdrant engine (qdrant-edge-py), the default deployment.

The only module that imports `qdrant_edge`. Decisions that follow from how the engine behaves
(see docs and the shared notes on qdrant-edge 0.9.0):

* One process owns a data directory: the WAL lock refuses a second `load`. The WAL stays on,
  so writes survive a crash without `flush()`; `close()` flushes and releases the lock.
* Every engine call holds the GIL. Optimisation (the HNSW build) is synchronous and froze a
  process for 77 s at 100k points, and the engine never runs it on its own. So the index
  searches exactly by default (7 ms at 100k) and `optimize()` is an explicit maintenance call.
  With the default `hnsw_indexing_threshold_kb=None` the threshold is so high that `optimize()`
  only vacuums and merges; pass e.g. 10_000 (the engine's default) to let it build HNSW.
* Sparse IDF is computed over the querying tenant's points (`IdfParams(corpus=tenant)`), so one
  tenant's documents neither change nor leak through another tenant's BM25 scores.
* Threads may share one instance: the engine serialises internally and searching while
  upserting returns consistent results. Upserts go in batches so readers get a turn between them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    Fusion,
    HasIdCondition,
    IdfParams,
    KeywordIndexParams,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    Point,
    Prefetch,
    Query,
    QueryBatchRequest,
    QueryRequest,
    RangeFloat,
    ScrollRequest,
    SearchParams,
    SparseVector,
    UpdateOperation,
)
from qdrant_edge import MatchAny as EdgeMatchAny

from core.errors import CairnError, IndexFailure, InvalidInput
from core.models import AccessScope, AnyOf, Condition, IndexFilter, IndexHit, IndexPoint, IndexQuery, MatchAny
from retrieval.index import _common as c

_log = logging.getLogger(__name__)

# Indexing threshold (KB of vectors per segment) above which `optimize()` builds HNSW. The
# default keeps every segment plain: exact search, and no multi-second GIL freeze.
EXACT_SEARCH_THRESHOLD_KB = 2**40
_SCHEMA: dict[str, Any] = {
    "tenant": KeywordIndexParams(is_tenant=True),
    "keyword": PayloadSchemaType.Keyword,
    "integer": PayloadSchemaType.Integer,
    "float": PayloadSchemaType.Float,
}


# Engine messages we can explain to an operator; anything else gets the generic message.
_HINTS = (
    (
        "lock",
        "the index directory is in use by another process; only one Cairn process may own an "
        "embedded index (use a Qdrant server to scale out)",
    ),
    (
        "incompatible",
        "the index directory was created with a different vector configuration (another "
        "embedding dimension?); point Cairn at a new directory and re-index",
    ),
)


@contextmanager
def _engine(action: str) -> Iterator[None]:
    """Turn any engine exception into an `IndexFailure` whose message is safe to show."""
    try:
        yield
    except CairnError:
        raise
    except Exception as exc:
        _log.exception("embedded index failed to %s", action)
        detail = str(exc).lower()
        hint = next((text for key, text in _HINTS if key in detail), None)
        raise IndexFailure(
            hint or f"the embedded vector index failed to {action}; see the server log"
        ) from exc


def _condition(cond: Condition) -> FieldCondition | Filter:
    if isinstance(cond, AnyOf):
        return Filter(should=[_all_of(option) for option in cond.options])
    if isinstance(cond, MatchAny):
        if len(cond.values) == 1:
            return FieldCondition(key=cond.key, match=MatchValue(cond.values[0]))
        return FieldCondition(key=cond.key, match=EdgeMatchAny(list(cond.values)))  # type: ignore[arg-type]
    return FieldCondition(key=cond.key, range=RangeFloat(gte=cond.gte, gt=cond.gt, lte=cond.lte, lt=cond.lt))


def _all_of(conds: tuple[Condition, ...]) -> FieldCondition | Filter:
    return _condition(conds[0]) if len(conds) == 1 else Filter(must=[_condition(x) for x in conds])


def _to_filter(f: IndexFilter) -> Filter:
    return Filter(
        must=[_condition(x) for x in f.must] or None,
        must_not=[_condition(x) for x in f.must_not] or None,
    )


class EdgeIndex:
    """Embedded engine index in one directory; cheap to construct, opened by `warm_up()`."""

    def __init__(
        self,
        path: Path,
        dense_dim: int = 384,
        *,
        hnsw_indexing_threshold_kb: int | None = None,
        upsert_batch: int = 2_000,
    ) -> None:
        if dense_dim < 1:
            raise ValueError(f"dense_dim must be a positive number of dimensions, got {dense_dim}")
        if upsert_batch < 1:
            raise ValueError(f"upsert_batch must be >= 1, got {upsert_batch}")
        self.path = Path(path)
        self.dense_dim = dense_dim
        self._threshold_kb = hnsw_indexing_threshold_kb or EXACT_SEARCH_THRESHOLD_KB
        self._batch = upsert_batch
        self._shard: EdgeShard | None = None
        self._lifecycle = threading.Lock()

    # ---- lifecycle ----------------------------------------------------------------------

    def _config(self) -> EdgeConfig:
        return EdgeConfig(
            vectors={c.DENSE: EdgeVectorParams(size=self.dense_dim, distance=Distance.Cosine)},
            sparse_vectors={c.SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
            optimizers=EdgeOptimizersConfig(indexing_threshold=self._threshold_kb),
            wal_enabled=True,
        )

    def warm_up(self) -> None:
        """Open the directory's shard, or create it; then add any missing payload index."""
        with self._lifecycle:
            if self._shard is not None:
                return
            exists = self.path.is_dir() and any(self.path.iterdir())
            with _engine("open the index directory"):
                shard = (EdgeShard.load if exists else EdgeShard.create)(str(self.path), self._config())
            try:
                with _engine("create payload indexes"):
                    have = set(shard.info().payload_schema)
                    for field, kind in c.payload_indexes():
                        if field not in have:
                            shard.update(UpdateOperation.create_field_index(field, _SCHEMA[kind]))
            except IndexFailure:
                shard.close()
                raise
            self._shard = shard

    def close(self) -> None:
        """Flush and release the directory lock; safe to call twice."""
        with self._lifecycle:
            shard, self._shard = self._shard, None
            if shard is not None:
                with _engine("close"):
                    shard.flush()
                    shard.close()

    def optimize(self) -> bool:
        """Vacuum, merge and (above the HNSW threshold) index segments. Maintenance only: it holds
        the GIL, so the whole process stops serving until it returns (tens of seconds at 100k)."""
        with _engine("optimize"):
            return bool(self._open().optimize())

    def _open(self) -> EdgeShard:
        shard = self._shard
        if shard is None:
            raise IndexFailure("the embedded index is not open; call warm_up() first")
        return shard

    # ---- writes -------------------------------------------------------------------------

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        shard = self._open()
        dim = self.dense_dim
        if any(len(p.dense) != dim for p in points):
            raise InvalidInput(f"every dense vector must have {dim} dimensions")
        mk_point, mk_sparse = Point, SparseVector
        for start in range(0, len(points), self._batch):
            with _engine("store points"):
                batch = [
                    mk_point(
                        p.id,
                        {c.DENSE: p.dense, c.SPARSE: mk_sparse(p.sparse.indices, p.sparse.values)},
                        p.payload,
                    )
                    for p in points[start : start + self._batch]
                ]
                shard.update(UpdateOperation.upsert_points(batch))

    def delete_versions(
        self, tenant_id: str, doc_id: str, *, below: int | None = None, only: int | None = None
    ) -> None:
        flt = _to_filter(c.versions_filter(tenant_id, doc_id, below, only))
        with _engine("delete a document's chunks"):
            self._open().update(UpdateOperation.delete_points_by_filter(flt))

    # ---- reads (all scoped) -------------------------------------------------------------

    def _request(self, q: IndexQuery) -> QueryRequest:
        c.validate_query(q, self.dense_dim)
        flt = _to_filter(c.scoped(q.scope, q.filter))
        idf = SearchParams(idf=IdfParams(corpus=_to_filter(c.tenant_only(q.scope.tenant_id))))
        dense = Query.Nearest(q.dense, using=c.DENSE) if q.dense is not None else None
        sparse = (
            Query.Nearest(SparseVector(q.sparse.indices, q.sparse.values), using=c.SPARSE)
            if q.sparse is not None
            else None
        )
        if dense is not None and sparse is not None:
            fusion: Any = (
                Fusion.Dbsf()
                if q.fusion == "dbsf"
                else Fusion.Rrf(k=q.rrf_k, weights=list(q.weights) if q.weights else None)
            )
            return QueryRequest(
                limit=q.limit,
                query=fusion,
                prefetches=[
                    Prefetch(limit=q.prefetch_limit, query=dense, filter=flt),
                    Prefetch(limit=q.prefetch_limit, query=sparse, filter=flt, params=idf),
                ],
                with_payload=q.with_payload,
            )
        if dense is not None:
            return QueryRequest(limit=q.limit, query=dense, filter=flt, with_payload=q.with_payload)
        return QueryRequest(limit=q.limit, query=sparse, filter=flt, params=idf, with_payload=q.with_payload)

    def query(self, q: IndexQuery) -> list[IndexHit]:
        request = self._request(q)
        with _engine("search"):
            found = self._open().query(request)
        return [c.hit(p) for p in found]

    def query_batch(self, queries: Sequence[IndexQuery]) -> list[list[IndexHit]]:
        """One engine call for several queries: the GIL is taken once instead of once per query.
        The engine still runs them one after another (a batch costs the sum of its queries)."""
        if not queries:
            return []
        requests = [self._request(q) for q in queries]
        with _engine("search"):
            found = self._open().query_batch(QueryBatchRequest(requests))
        return [[c.hit(p) for p in points] for points in found]

    def count(self, scope: AccessScope, filter: IndexFilter | None = None) -> int:
        flt = _to_filter(c.scoped(scope, filter))
        with _engine("count points"):
            return int(self._open().count(CountRequest(exact=True, filter=flt)))

    def chunks_of(self, scope: AccessScope, doc_id: str, version: int | None = None) -> list[IndexHit]:
        flt = _to_filter(c.scoped(scope, c.chunk_filter(doc_id, version)))
        shard = self._open()
        hits: list[IndexHit] = []
        offset: Any = None
        with _engine("list a document's chunks"):
            while True:
                records, offset = shard.scroll(
                    ScrollRequest(
                        offset=offset, limit=c.SCROLL_PAGE, filter=flt, with_payload=True, with_vector=False
                    )
                )
                hits.extend(c.hit(r) for r in records)
                if offset is None:
                    break
        return c.in_chunk_order(hits)

    def retrieve(self, scope: AccessScope, ids: Sequence[str], *, vectors: bool = False) -> list[IndexHit]:
        """A scroll over the ids AND the scoped filter: the engine's own retrieve takes no filter."""
        wanted = c.point_ids(ids)
        if not wanted:
            return []
        f = c.scoped(scope)
        flt = Filter(
            must=[*(_condition(x) for x in f.must), HasIdCondition(set(wanted))],
            must_not=[_condition(x) for x in f.must_not] or None,
        )
        with _engine("fetch points"):
            records, _ = self._open().scroll(
                ScrollRequest(limit=len(wanted), filter=flt, with_payload=True, with_vector=vectors)
            )
        return c.in_request_order((c.hit(r, vectors) for r in records), wanted)
