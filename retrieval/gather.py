"""Running gatherers against the index: every gatherer of a request in ONE engine call.

Why one batch, not a thread per gatherer: the embedded engine holds the GIL for the whole of
every call, so threads cannot overlap engine queries; four gatherers on four threads cost four
queries back to back plus the hand-offs. One `VectorIndex.query_batch` takes the GIL once and
costs one thread hop (one round trip on a Qdrant server, which runs the batch on its own cores).
The embedded engine runs a batch's queries one after another, so the batch costs the sum of its
queries (measured: the example four gatherers 3.2-3.9 ms of CPU as one batch or as four calls),
and four gatherers take longer than one (benchmarks/gatherers.py). If the batch fails, each
gatherer is retried alone, so one bad gatherer only fails itself.

Two query shapes, chosen per request:

* plain (no rerank, no explain): one hybrid query per gatherer, dense + BM25 prefetches fused by
  the engine (RRF or DBSF) — the cheapest call, and the one the latency target is measured on;
* staged (rerank or explain): the dense-only and the sparse-only lists of each gatherer in the
  same batch, fused here with `retrieval.fusion` (the engine's exact formulas), because the
  reranker needs the raw cosine and BM25 scores that an engine-fused result no longer carries.
  Both shapes rank identically (tests/retrieval/test_service.py).

Ids first, payloads last: every gatherer query asks for ids and scores only. Reading payloads was
most of a query's cost in the engine (the four example gatherers' staged lists: ~480 payloads
turned into Python objects per request, for the 5 that get returned), so the service reads the
chunks of the hits that survive the merge with `IndexGatherBackend.chunks` — one scoped engine
call for the rerank head, then a page at a time as dedupe walks down (`retrieval/service.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from core import tracing
from core.models import AccessScope, IndexFilter, IndexHit, IndexQuery, Principal, RetrievedChunk
from retrieval.fusion import FusionMethod, Hit, fuse
from retrieval.search import EncodedQuery, HybridSearcher, to_chunk

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatherCall:
    """One gatherer's share of a request: its name, full filter (request AND gatherer; the
    adapter adds tenant + ACL) and how many chunks it contributes."""

    name: str
    filter: IndexFilter
    limit: int
    fusion: FusionMethod = "rrf"
    rrf_k: int = 60
    weights: tuple[float, float] | None = None  # (dense, sparse)


GatherOutcome = list[Hit] | Exception


class GatherBackend(Protocol):
    """Runs several gatherer calls for one query, synchronously (the service puts it in a
    thread). One outcome per call, in order: a ranked hit list or the exception it raised.
    A backend other than the index returns hits that already carry their chunk (`Hit.of`)."""

    def gather(
        self, principal: Principal, query: EncodedQuery, calls: Sequence[GatherCall], *, staged: bool
    ) -> list[GatherOutcome]: ...


def _ranked(hits: list[IndexHit], stage: str) -> list[Hit]:
    return [Hit(h.id, h.score, {stage: h.score, f"{stage}_rank": float(r)}) for r, h in enumerate(hits, start=1)]


class IndexGatherBackend:
    """`GatherBackend` over a `VectorIndex`, sharing the searcher's query encoding.

    Gatherer queries ask the engine for ids and scores only; `chunks` reads the payloads (and,
    for the reranker, the vectors) of the few hits that survive the merge, in one scoped call."""

    def __init__(self, searcher: HybridSearcher) -> None:
        self._searcher = searcher

    def _queries(self, scope: AccessScope, q: EncodedQuery, call: GatherCall, staged: bool) -> list[IndexQuery]:
        base = IndexQuery(
            scope=scope,
            filter=call.filter,
            dense=q.dense,
            sparse=q.sparse,
            limit=call.limit,
            prefetch_limit=max(self._searcher.prefetch_limit, call.limit * 2),
            fusion=call.fusion,
            rrf_k=call.rrf_k,
            weights=call.weights if call.fusion == "rrf" else None,
            with_payload=False,
        )
        if staged and q.dense is not None and q.sparse is not None:
            return [
                replace(base, sparse=None, limit=base.prefetch_limit),
                replace(base, dense=None, limit=base.prefetch_limit),
            ]
        return [base]

    def _finish(self, call: GatherCall, q: EncodedQuery, results: list[list[IndexHit]]) -> GatherOutcome:
        if len(results) == 2:
            weights = dict(zip(("dense", "sparse"), call.weights, strict=True)) if call.weights else None
            lists = {"dense": _ranked(results[0], "dense"), "sparse": _ranked(results[1], "sparse")}
            fused = fuse(lists, call.fusion, k=call.rrf_k, weights=weights, key="hybrid", limit=call.limit)
            return [f.hit for f in fused]
        stage = "sparse" if q.dense is None else ("dense" if q.sparse is None else "hybrid")
        return _ranked(results[0][: call.limit], stage)

    def gather(
        self, principal: Principal, query: EncodedQuery, calls: Sequence[GatherCall], *, staged: bool
    ) -> list[GatherOutcome]:
        scope = AccessScope.of(principal)
        plans = [self._queries(scope, query, call, staged) for call in calls]
        flat = [iq for plan in plans for iq in plan]
        index = self._searcher.index
        try:
            with tracing.span("index.query_batch", tenant=principal.tenant_id, queries=len(flat)):
                hits = index.query_batch(flat)
        except Exception:
            _log.warning("batched gatherer query failed; retrying each gatherer alone", exc_info=True)
            return [self._alone(call, query, plan) for call, plan in zip(calls, plans, strict=True)]
        out: list[GatherOutcome] = []
        at = 0
        for call, plan in zip(calls, plans, strict=True):
            out.append(self._finish(call, query, hits[at : at + len(plan)]))
            at += len(plan)
        return out

    def _alone(self, call: GatherCall, query: EncodedQuery, plan: list[IndexQuery]) -> GatherOutcome:
        try:
            hits = self._searcher.index.query_batch(plan)
        except Exception as exc:
            return exc
        return self._finish(call, query, hits)

    def chunks(
        self, principal: Principal, ids: Sequence[str], *, vectors: bool = False
    ) -> dict[str, tuple[RetrievedChunk, list[float] | None]]:
        """The chunks behind these hit ids (and their dense vectors when asked), read in one
        engine call under the principal's tenant + ACL filter. An id that is gone (deleted since
        the query) or no longer visible is absent."""
        if not ids:
            return {}
        with tracing.span("index.retrieve", tenant=principal.tenant_id, chunks=len(ids), vectors=vectors):
            found = self._searcher.index.retrieve(AccessScope.of(principal), ids, vectors=vectors)
        return {h.id: (to_chunk(h), h.dense) for h in found}
