"""The query path for one request, end to end: gatherers -> merge -> rerank -> dedupe -> context.

    encode query once -> gatherers concurrently (per-gatherer timeout; one engine batch for all
    index gatherers; ids and scores only) -> weighted RRF merge with provenance -> read the
    chunks of the rerank head -> rerank -> near-duplicate removal (reading further chunks only as
    far down as it gets) -> top_k -> optional context window within a token budget

A gatherer that times out or fails becomes a `GathererError` beside the other gatherers' results:
partial results, never an exception, unless every gatherer failed (then `Unavailable`). Tenant and
ACL are applied by the index adapter on every engine read, and gatherer / request filters are
ANDed onto them, so no gatherer and no request value can widen what the principal may read.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any

from core import tracing
from core.errors import InvalidInput, Unavailable
from core.models import Principal, RetrievedChunk, SearchFilters
from retrieval.context import ContextWindow, TokenCount, approx_tokens, build_context
from retrieval.dedupe import Dropped, drop_near_duplicates, mmr
from retrieval.filters import narrow
from retrieval.fusion import Contribution, FusionMethod, Hit, rrf
from retrieval.gather import GatherBackend, GatherCall, GatherOutcome, IndexGatherBackend
from retrieval.gatherers import BoundGatherer, GathererRegistry
from retrieval.rerank.protocol import Reranker
from retrieval.search import EncodedQuery, HybridSearcher, SearchMode, keep_newest

INDEX = "index"


@dataclass(frozen=True)
class RetrievalDefaults:
    """Fusion and post-processing defaults; values chosen by benchmarks/quality.py (see the
    settings docstring in core/settings.py for the measured figures)."""

    top_k: int = 5
    fusion: FusionMethod = "dbsf"
    rrf_k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    merge_rrf_k: int = 60
    rerank: bool = True
    rerank_depth: int = 30
    dedupe_threshold: float = 0.8
    mmr_lambda: float = 1.0
    max_concurrency: int = 4


@dataclass(frozen=True)
class SearchOptions:
    """Overrides of the fusion and rerank defaults; None keeps the default. A tenant's active
    tuning is one of these (resolved per request by `RetrievalService.tuning_for`), and a tuning
    job passes one per trial. Gatherers that set their own fusion in YAML keep it, and an
    explicit `rerank` argument to `retrieve()` still wins."""

    fusion: FusionMethod | None = None
    dense_weight: float | None = None
    sparse_weight: float | None = None
    rerank: bool | None = None
    rerank_depth: int | None = None

    def apply(self, d: RetrievalDefaults) -> RetrievalDefaults:
        changed = {k: v for k, v in self.__dict__.items() if v is not None}
        return replace(d, **changed) if changed else d


@dataclass(frozen=True)
class GathererError:
    gatherer: str
    code: str  # "timeout" | "failed"
    message: str


@dataclass
class RetrievalResult:
    chunks: list[RetrievedChunk]
    errors: list[GathererError] = field(default_factory=list)
    explain: dict[str, Any] | None = None
    context: ContextWindow | None = None


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


class _ChunkReader:
    """Turns merged hits into chunks, reading index hits' payloads in as few scoped engine calls
    as the caller's walk down the ranking needs. Hits from other sources carry their chunk.

    Versions: a re-version writes the new chunks before deleting the old, so for a moment both
    can rank. A chunk is skipped when a newer version of its document has been read in this
    request (and `_select` drops any older version that got out before the newer one was read),
    so one response never mixes two versions of a document."""

    def __init__(self, backend: IndexGatherBackend, principal: Principal) -> None:
        self._backend, self._principal = backend, principal
        self._newest: dict[str, int] = {}
        self.ms = 0.0  # time spent reading

    def read(
        self, hits: Sequence[Hit], *, vectors: bool = False
    ) -> tuple[list[RetrievedChunk], list[list[float] | None]]:
        """The hits' chunks (gone or invisible ones left out) and, aligned, their stored dense
        vectors when asked (None for a chunk from another source)."""
        t0 = time.perf_counter()
        wanted = [h.chunk_id for h in hits if h.chunk is None]
        found = self._backend.chunks(self._principal, wanted, vectors=vectors) if wanted else {}
        rows: list[tuple[RetrievedChunk, list[float] | None]] = []
        for h in hits:
            if h.chunk is not None:
                rows.append((h.resolved(), None))
            elif h.chunk_id in found:
                chunk, vec = found[h.chunk_id]
                rows.append((h.resolved(chunk), vec))
        for chunk, _ in rows:
            self._newest[chunk.doc_id] = max(self._newest.get(chunk.doc_id, -1), chunk.version)
        rows = [(c, v) for c, v in rows if c.version == self._newest[c.doc_id]]
        self.ms += (time.perf_counter() - t0) * 1000
        return [c for c, _ in rows], [v for _, v in rows]

    def stream(self, hits: Sequence[Hit], page: int) -> Iterator[RetrievedChunk]:
        """The hits' chunks in order, read `page` at a time as the consumer asks for more."""
        for start in range(0, len(hits), page):
            yield from self.read(hits[start : start + page])[0]


class RetrievalService:
    """Async facade over the synchronous engine path. Cheap to construct; the searcher's
    embedder and the reranker are warmed up by the composition root."""

    def __init__(
        self,
        searcher: HybridSearcher,
        registry: GathererRegistry,
        reranker: Reranker | None = None,
        *,
        defaults: RetrievalDefaults | None = None,
        sources: Mapping[str, GatherBackend] | None = None,
        count_tokens: TokenCount = approx_tokens,
        tuning_for: Callable[[str], SearchOptions | None] | None = None,
    ) -> None:
        self._searcher = searcher
        self.registry = registry
        self._reranker = reranker
        self.defaults = defaults or RetrievalDefaults()
        self._index_backend = IndexGatherBackend(searcher)
        self._sources = dict(sources or {})  # gatherer name -> backend other than the index
        self._count = count_tokens
        # tenant id -> that tenant's active tuning (None: the defaults above)
        self.tuning_for = tuning_for
        # one semaphore per event loop: the API's loop and `asyncio.run` in worker threads
        # (evaluation jobs) must not share a loop-bound primitive
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def warm_up(self) -> None:
        if self._reranker is not None:
            self._reranker.warm_up()

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._limits.get(loop)
        if sem is None:
            sem = self._limits[loop] = asyncio.Semaphore(self.defaults.max_concurrency)
        return sem

    def effective_defaults(self, tenant_id: str, options: SearchOptions | None = None) -> RetrievalDefaults:
        """The defaults one request runs with: `options` when given, else the tenant's tuning."""
        if options is None and self.tuning_for is not None:
            options = self.tuning_for(tenant_id)
        return options.apply(self.defaults) if options is not None else self.defaults

    def _call(
        self, g: BoundGatherer, base: SearchFilters | None, top_k: int, rerank: bool, d: RetrievalDefaults
    ) -> GatherCall:
        s = g.spec
        limit = max(s.top_k, top_k, d.rerank_depth if rerank else 0)
        fusion = s.fusion or d.fusion
        weights = (s.dense_weight or d.dense_weight, s.sparse_weight or d.sparse_weight)
        return GatherCall(
            name=s.name,
            filter=narrow(self._searcher.base_filter(base), g.filters),
            limit=limit,
            fusion=fusion,
            rrf_k=s.rrf_k or d.rrf_k,
            weights=None if weights == (1.0, 1.0) or fusion != "rrf" else weights,
        )

    async def _run_backend(
        self,
        backend: GatherBackend,
        principal: Principal,
        q: EncodedQuery,
        calls: list[GatherCall],
        staged: bool,
    ) -> list[GatherOutcome]:
        async with self._limit():
            return await asyncio.to_thread(backend.gather, principal, q, calls, staged=staged)

    async def _gather(
        self,
        principal: Principal,
        q: EncodedQuery,
        bound: list[BoundGatherer],
        calls: list[GatherCall],
        staged: bool,
    ) -> tuple[dict[str, list[Hit]], list[GathererError], dict[str, float]]:
        groups: dict[int, tuple[GatherBackend, list[int]]] = {}
        for i, g in enumerate(bound):
            backend = self._sources.get(g.spec.name, self._index_backend)
            groups.setdefault(id(backend), (backend, []))[1].append(i)
        tasks: dict[int, asyncio.Task[list[GatherOutcome]]] = {}
        position: dict[int, tuple[int, int]] = {}
        for key, (backend, members) in groups.items():
            tasks[key] = asyncio.create_task(
                self._run_backend(backend, principal, q, [calls[i] for i in members], staged)
            )
            for slot, i in enumerate(members):
                position[i] = (key, slot)
        t0 = time.perf_counter()

        async def one(i: int) -> tuple[GatherOutcome | None, float]:
            key, slot = position[i]
            with tracing.span("gatherer", gatherer=bound[i].spec.name, tenant=principal.tenant_id) as sp:
                try:
                    async with asyncio.timeout(bound[i].spec.timeout_s):
                        outcomes = await asyncio.shield(tasks[key])
                except TimeoutError:
                    sp.set_attribute("outcome", "timeout")
                    return None, _ms(t0)
                except Exception as exc:  # the backend itself broke: every member fails alike
                    sp.set_attribute("outcome", "failed")
                    return exc, _ms(t0)
                out = outcomes[slot]
                sp.set_attribute("outcome", "failed" if isinstance(out, Exception) else "ok")
                return out, _ms(t0)

        done = await asyncio.gather(*(one(i) for i in range(len(bound))))
        for task in tasks.values():
            if not task.done():  # a slow source keeps running in its thread; its result is dropped
                task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        lists: dict[str, list[Hit]] = {}
        errors: list[GathererError] = []
        timings: dict[str, float] = {}
        for g, (outcome, ms) in zip(bound, done, strict=True):
            name = g.spec.name
            timings[name] = ms
            if outcome is None:
                errors.append(GathererError(name, "timeout", f"no answer within {g.spec.timeout_s} s"))
            elif isinstance(outcome, Exception):
                reason = (
                    outcome.message
                    if isinstance(outcome, InvalidInput | Unavailable)
                    else type(outcome).__name__
                )
                errors.append(GathererError(name, "failed", f"gatherer failed: {reason}"))
            else:
                lists[name] = [Hit(h.chunk_id, h.score, h.scores, h.chunk, name) for h in outcome]
        return lists, errors, timings

    async def retrieve(
        self,
        principal: Principal,
        query: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        gatherers: Sequence[str] | None = None,
        params: Mapping[str, str] | None = None,
        rerank: bool | None = None,
        explain: bool = False,
        mode: SearchMode = "hybrid",
        context_tokens: int | None = None,
        options: SearchOptions | None = None,
    ) -> RetrievalResult:
        with tracing.span("retrieve", tenant=principal.tenant_id, mode=mode) as sp:
            result = await self._retrieve(
                principal, query, top_k=top_k, filters=filters, gatherers=gatherers, params=params,
                rerank=rerank, explain=explain, mode=mode, context_tokens=context_tokens, options=options,
            )  # fmt: skip
            sp.set_attribute("chunks", len(result.chunks))
            sp.set_attribute("gatherer_errors", len(result.errors))
            return result

    async def _retrieve(
        self,
        principal: Principal,
        query: str,
        *,
        top_k: int | None,
        filters: SearchFilters | None,
        gatherers: Sequence[str] | None,
        params: Mapping[str, str] | None,
        rerank: bool | None,
        explain: bool,
        mode: SearchMode,
        context_tokens: int | None,
        options: SearchOptions | None,
    ) -> RetrievalResult:
        d = self.effective_defaults(principal.tenant_id, options)
        if not query.strip():
            raise InvalidInput("query must not be blank", field="query")
        top_k = top_k or d.top_k
        do_rerank = (d.rerank if rerank is None else rerank) and self._reranker is not None
        bound = self.registry.resolve(gatherers, params)  # 422s before any work
        timings: dict[str, Any] = {}
        t_all = t0 = time.perf_counter()
        q = await asyncio.to_thread(self._searcher.encode, query, mode)
        timings["encode_ms"] = _ms(t0)
        calls = [self._call(g, filters, top_k, do_rerank, d) for g in bound]
        t0 = time.perf_counter()
        lists, errors, per_gatherer = await self._gather(principal, q, bound, calls, do_rerank or explain)
        timings["gather_ms"] = _ms(t0)
        if not lists:
            raise Unavailable("every gatherer failed or timed out: " + "; ".join(e.message for e in errors))

        t0 = time.perf_counter()
        provenance: dict[str, tuple[Contribution, ...]]
        if len(lists) == 1:
            ((name, only),) = lists.items()
            ranked = only
            provenance = {h.chunk_id: (Contribution(name, r, h.score),) for r, h in enumerate(only, 1)}
        else:
            weights = {g.spec.name: g.spec.weight for g in bound if g.spec.name in lists}
            fused = rrf(lists, k=d.merge_rrf_k, weights=weights, key="merged")
            ranked = [f.hit for f in fused]
            provenance = {f.hit.chunk_id: f.contributions for f in fused}
        timings["merge_ms"] = _ms(t0)

        kept, dropped = await asyncio.to_thread(
            self._select, principal, query, ranked, top_k, do_rerank, d, timings
        )
        context = build_context(kept, context_tokens, self._count) if context_tokens else None
        timings["total_ms"] = _ms(t_all)
        result = RetrievalResult(kept, errors, None, context)
        if explain:
            result.explain = self._explain(kept, provenance, dropped, timings, per_gatherer, do_rerank)
        return result

    def _select(
        self,
        principal: Principal,
        query: str,
        ranked: list[Hit],
        top_k: int,
        do_rerank: bool,
        d: RetrievalDefaults,
        timings: dict[str, Any],
    ) -> tuple[list[RetrievedChunk], list[Dropped]]:
        """Rerank the head, drop near-duplicates and cut to top_k, reading chunks (one scoped
        engine call for the head with the vectors the reranker wants, then a page at a time)
        only as far down the ranking as these steps get; MMR weighs every candidate, so with it
        the rest is read in one call."""
        reader = _ChunkReader(self._index_backend, principal)
        t0 = time.perf_counter()
        head: list[RetrievedChunk] = []
        rest = ranked
        if do_rerank:
            assert self._reranker is not None
            wants_vectors = bool(getattr(self._reranker, "uses_vectors", False))
            chunks, vectors = reader.read(ranked[: d.rerank_depth], vectors=wants_vectors)
            if wants_vectors:
                head = self._reranker.rerank(query, chunks, vectors=vectors)
            else:
                head = self._reranker.rerank(query, chunks)
            rest = ranked[d.rerank_depth :]
        timings["rerank_ms"] = round(_ms(t0) - reader.ms, 3)
        fetched, t0 = reader.ms, time.perf_counter()
        stream: Iterator[RetrievedChunk]
        if d.mmr_lambda < 1.0:  # diversification weighs every candidate: read them all at once
            every = head + reader.read(rest)[0]
            stream = iter(mmr(every, k=min(len(every), top_k * 4), lambda_=d.mmr_lambda))
        else:
            stream = chain(head, reader.stream(rest, page=max(2 * top_k, 10)))
        kept, dropped = drop_near_duplicates(stream, d.dedupe_threshold, limit=top_k)
        timings["dedupe_ms"] = round(_ms(t0) - (reader.ms - fetched), 3)
        timings["fetch_ms"] = round(reader.ms, 3)
        return keep_newest(kept, lambda c: (c.doc_id, c.version)), dropped

    def _explain(
        self,
        kept: list[RetrievedChunk],
        provenance: Mapping[str, tuple[Contribution, ...]],
        dropped: list[Dropped],
        timings: dict[str, Any],
        per_gatherer: dict[str, float],
        reranked: bool,
    ) -> dict[str, Any]:
        return {
            "timings_ms": {**timings, "gatherers": per_gatherer},
            "reranker": type(self._reranker).__name__ if reranked else None,
            "results": [
                {
                    "chunk_id": c.chunk_id,
                    "gatherers": [
                        {"gatherer": p.source, "rank": p.rank, "score": p.score}
                        for p in provenance.get(c.chunk_id, ())
                    ],
                    "scores": c.scores,
                }
                for c in kept
            ],
            "dropped_duplicates": [
                {"chunk_id": x.chunk_id, "duplicate_of": x.kept_chunk_id, "similarity": x.similarity}
                for x in dropped
            ],
        }
