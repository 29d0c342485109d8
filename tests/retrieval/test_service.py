"""The retrieval service on the real embedded engine: gatherers, partial results, ACL, rerank.

Query vectors come from a small deterministic bag-of-words embedder (no model load); what is under
test is the path around the engine, not the embedding model."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from core.errors import Unavailable
from core.models import (
    EFFECTIVE_MAX_TS,
    EFFECTIVE_MIN_TS,
    AccessScope,
    IndexPoint,
    Principal,
    RetrievedChunk,
    SearchFilters,
    chunk_id,
)
from retrieval.fusion import Hit
from retrieval.gather import GatherCall, GatherOutcome
from retrieval.gatherers import GathererRegistry, GathererSpec, MissingGathererParam, UnknownGatherer
from retrieval.index.edge import EdgeIndex
from retrieval.rerank import LearnedReranker
from retrieval.search import EncodedQuery, HybridSearcher
from retrieval.service import RetrievalDefaults, RetrievalService
from retrieval.sparse import Bm25SparseEncoder

pytestmark = pytest.mark.integration
DIM = 64
ALICE = Principal(tenant_id="t1", user="alice", groups=("support",))
BOB = Principal(tenant_id="t1", user="bob", groups=("sales",))


class BagOfWords:
    dim, model_id = DIM, "bow"

    def warm_up(self) -> None:
        pass

    def embed_query(self, text: str) -> list[float]:
        v = [0.0] * DIM
        for w in text.lower().split():
            v[int(hashlib.md5(w.encode()).hexdigest(), 16) % DIM] += 1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]


DOCS = [
    (
        "manual",
        "group:support",
        ["product_docs"],
        "upload",
        "router setup manual: reset the router and update firmware",
    ),
    ("refunds", "group:support", ["policy"], "upload", "refund policy: refunds within 30 days of purchase"),
    (
        "t-acme",
        "group:support",
        ["customer:acme"],
        "tickets",
        "acme ticket: router keeps rebooting after firmware update",
    ),
    (
        "t-beta",
        "group:support",
        ["customer:beta", "resolved"],
        "tickets",
        "beta ticket: router reboot fixed by reset",
    ),
    (
        "secret",
        "group:sales",
        ["product_docs", "policy"],
        "upload",
        "router pricing for sales only: discount policy",
    ),
]


@pytest.fixture
def searcher(tmp_path: Path) -> Iterator[HybridSearcher]:
    emb, sparse = BagOfWords(), Bm25SparseEncoder()
    index = EdgeIndex(tmp_path / "shard", dense_dim=DIM)
    index.warm_up()
    points = []
    for doc, acl, tags, source, text in DOCS:
        payload = {
            "tenant_id": "t1",
            "doc_id": doc,
            "version": 1,
            "chunk_index": 0,
            "text": text,
            "char_start": 0,
            "char_end": len(text),
            "title": doc,
            "source": source,
            "tags": tags,
            "policy_tags": [],
            "acl": [acl],
            "effective_from_ts": EFFECTIVE_MIN_TS,
            "effective_to_ts": EFFECTIVE_MAX_TS,
        }
        points.append(
            IndexPoint(
                chunk_id("t1", doc, 1, 0), emb.embed_query(text), sparse.encode_document(text), payload
            )
        )
    index.upsert(points)
    yield HybridSearcher(emb, sparse, index)
    index.close()


def service(searcher: HybridSearcher, **kw: object) -> RetrievalService:
    return RetrievalService(searcher, GathererRegistry.from_yaml(), **kw)  # type: ignore[arg-type]


class SlowSource:
    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail

    def gather(
        self, principal: Principal, query: EncodedQuery, calls: Sequence[GatherCall], *, staged: bool
    ) -> list[GatherOutcome]:
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("ticket system down")
        return [[] for _ in calls]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_gatherers_narrow_to_their_slice(searcher: HybridSearcher) -> None:
    svc = service(searcher)
    res = run(svc.retrieve(ALICE, "router firmware", gatherers=["product_docs"], rerank=False))
    assert [c.doc_id for c in res.chunks] == ["manual"] and res.chunks[0].gatherer == "product_docs"
    res = run(svc.retrieve(ALICE, "router", gatherers=["customer_history"], params={"customer_id": "acme"}))
    assert [c.doc_id for c in res.chunks] == ["t-acme"]


def test_no_gatherer_and_no_filter_widens_the_acl(searcher: HybridSearcher) -> None:
    svc = service(searcher)
    for names in (None, ["all"], ["product_docs"], ["policies"], ["all", "product_docs", "policies"]):
        for filters in (None, SearchFilters(doc_ids=["secret"]), SearchFilters(tags=["product_docs"])):
            res = run(svc.retrieve(ALICE, "router pricing discount policy", gatherers=names, filters=filters))
            assert "secret" not in {c.doc_id for c in res.chunks}, (names, filters)
    res = run(svc.retrieve(BOB, "router pricing discount policy", gatherers=["product_docs"]))
    assert [c.doc_id for c in res.chunks] == ["secret"]


def test_a_slow_or_failing_gatherer_yields_an_error_entry_and_the_rest_still_answer(
    searcher: HybridSearcher,
) -> None:
    svc = service(
        searcher, sources={"similar_tickets": SlowSource(2.0), "customer_history": SlowSource(0, True)}
    )

    async def timed():  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        res = await svc.retrieve(
            ALICE,
            "router reboot",
            gatherers=["product_docs", "similar_tickets", "customer_history"],
            params={"customer_id": "acme"},
        )
        return res, time.perf_counter() - t0

    res, took = run(timed())
    assert took < 1.5  # similar_tickets' timeout is 1 s, not its 2 s delay
    assert {(e.gatherer, e.code) for e in res.errors} == {
        ("similar_tickets", "timeout"),
        ("customer_history", "failed"),
    }
    assert "ConnectionError" in next(e.message for e in res.errors if e.gatherer == "customer_history")
    assert [c.doc_id for c in res.chunks] == ["manual"]


def test_every_gatherer_failing_is_unavailable(searcher: HybridSearcher) -> None:
    svc = service(searcher, sources={"policies": SlowSource(0, True)})
    with pytest.raises(Unavailable, match="every gatherer failed"):
        run(svc.retrieve(ALICE, "refund", gatherers=["policies"]))


def test_unknown_gatherer_or_missing_param_is_refused_before_any_work(searcher: HybridSearcher) -> None:
    svc = service(searcher)
    with pytest.raises(UnknownGatherer) as err:
        run(svc.retrieve(ALICE, "router", gatherers=["nope"]))
    assert err.value.code == "unknown_gatherer"
    with pytest.raises(MissingGathererParam):
        run(svc.retrieve(ALICE, "router", gatherers=["customer_history"]))


def test_explain_carries_provenance_stage_scores_and_timings(searcher: HybridSearcher) -> None:
    svc = service(searcher)
    res = run(
        svc.retrieve(ALICE, "router reset", gatherers=["all", "product_docs"], explain=True, rerank=False)
    )
    ex = res.explain
    assert ex is not None and {"encode_ms", "gather_ms", "rerank_ms", "total_ms"} <= set(ex["timings_ms"])
    manual = next(r for r in ex["results"] if r["chunk_id"] == chunk_id("t1", "manual", 1, 0))
    assert {g["gatherer"] for g in manual["gatherers"]} == {"all", "product_docs"}
    assert {"dense", "sparse", "hybrid", "merged"} <= set(manual["scores"])


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_client_side_fusion_orders_exactly_like_the_engine(searcher: HybridSearcher, fusion: str) -> None:
    svc = service(searcher, defaults=RetrievalDefaults(fusion=fusion, rrf_k=20))  # type: ignore[arg-type]
    for q in ("router firmware update", "refund policy", "ticket reboot reset"):
        plain = run(svc.retrieve(ALICE, q, top_k=5, rerank=False))
        staged = run(svc.retrieve(ALICE, q, top_k=5, rerank=False, explain=True))
        assert [c.score for c in plain.chunks] == pytest.approx([c.score for c in staged.chunks])
        # same chunks at every score (the engine orders exact ties arbitrarily)
        assert {(round(c.score, 6), c.chunk_id) for c in plain.chunks} == {
            (round(c.score, 6), c.chunk_id) for c in staged.chunks
        }


class ShortestFirst:
    def warm_up(self) -> None:
        pass

    def rerank(
        self, query: str, chunks: list[RetrievedChunk], top_k: int | None = None
    ) -> list[RetrievedChunk]:
        ordered = sorted(chunks, key=lambda c: len(c.text))
        return [c.model_copy(update={"scores": {**c.scores, "rerank": -len(c.text)}}) for c in ordered]


class KeepsVectors:
    """Changes nothing; keeps the vectors the service handed over, per chunk id."""

    def __init__(self, uses_vectors: bool) -> None:
        self.uses_vectors = uses_vectors
        self.seen: list[tuple[list[str], Sequence[Sequence[float] | None] | None]] = []

    def warm_up(self) -> None:
        pass

    def rerank(
        self,
        query: str,
        chunks: list[RetrievedChunk],
        top_k: int | None = None,
        vectors: Sequence[Sequence[float] | None] | None = None,
    ) -> list[RetrievedChunk]:
        self.seen.append(([c.chunk_id for c in chunks], vectors))
        return chunks


def test_a_reranker_that_uses_vectors_gets_the_stored_ones_of_its_chunks(searcher: HybridSearcher) -> None:
    wants, ignores = KeepsVectors(True), KeepsVectors(False)
    run(service(searcher, reranker=wants).retrieve(ALICE, "router reset firmware", rerank=True))
    run(service(searcher, reranker=ignores).retrieve(ALICE, "router reset firmware", rerank=True))
    ((ids, vectors),) = wants.seen
    assert ids and vectors is not None and len(vectors) == len(ids)
    emb = BagOfWords()
    stored = {chunk_id("t1", doc, 1, 0): emb.embed_query(text) for doc, *_, text in DOCS}
    for cid, vec in zip(ids, vectors, strict=True):
        assert vec == pytest.approx(stored[cid], abs=1e-3)
    assert chunk_id("t1", "secret", 1, 0) not in ids  # Bob's chunk: neither retrieved nor read
    assert ignores.seen[0][1] is None


def test_rerank_reorders_deterministically(searcher: HybridSearcher) -> None:
    svc = service(searcher, reranker=ShortestFirst())
    a = run(svc.retrieve(ALICE, "router", rerank=True))
    lengths = [len(c.text) for c in a.chunks]
    assert lengths == sorted(lengths) and all("rerank" in c.scores for c in a.chunks)
    learned = service(searcher, reranker=LearnedReranker())
    first = run(learned.retrieve(ALICE, "router firmware reboot", rerank=True))
    again = run(learned.retrieve(ALICE, "router firmware reboot", rerank=True))
    assert [c.chunk_id for c in first.chunks] == [c.chunk_id for c in again.chunks]
    assert all("dense" in c.scores and "rerank" in c.scores for c in first.chunks)


def filler(n: int) -> list[IndexPoint]:
    """`n` more support-readable router chunks, so rankings are longer than what a request reads."""
    emb, sparse = BagOfWords(), Bm25SparseEncoder()
    points = []
    for i in range(n):
        text = f"router note {i}: firmware {i} reset step {i}"
        payload = {
            "tenant_id": "t1", "doc_id": f"note-{i}", "version": 1, "chunk_index": 0, "text": text,
            "char_start": 0, "char_end": len(text), "title": f"note {i}", "source": "upload",
            "tags": ["product_docs"], "policy_tags": [], "acl": ["group:support"],
            "effective_from_ts": EFFECTIVE_MIN_TS, "effective_to_ts": EFFECTIVE_MAX_TS,
        }  # fmt: skip
        cid = chunk_id("t1", f"note-{i}", 1, 0)
        points.append(IndexPoint(cid, emb.embed_query(text), sparse.encode_document(text), payload))
    return points


class Reads:
    """Spies on the index: what the gatherer queries asked for and which chunks were read."""

    def __init__(self, index: object, monkeypatch: pytest.MonkeyPatch) -> None:
        self.payload_asked: list[bool] = []
        self.reads: list[tuple[int, bool]] = []
        query_batch, retrieve = index.query_batch, index.retrieve  # type: ignore[attr-defined]

        def spy_query_batch(queries):  # type: ignore[no-untyped-def]
            self.payload_asked += [q.with_payload for q in queries]
            return query_batch(queries)

        def spy_retrieve(scope, ids, *, vectors=False):  # type: ignore[no-untyped-def]
            self.reads.append((len(ids), vectors))
            return retrieve(scope, ids, vectors=vectors)

        monkeypatch.setattr(index, "query_batch", spy_query_batch)
        monkeypatch.setattr(index, "retrieve", spy_retrieve)


def test_engine_queries_carry_no_payload_and_only_the_chunks_a_request_needs_are_read(
    searcher: HybridSearcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher.index.upsert(filler(60))
    reads = Reads(searcher.index, monkeypatch)
    svc = service(searcher, reranker=LearnedReranker())
    gatherers = ["product_docs", "all"]
    plain = run(svc.retrieve(ALICE, "router firmware reset", top_k=3, gatherers=gatherers, rerank=False))
    assert len(plain.chunks) == 3 and all(c.text.startswith(("router", "acme", "beta")) for c in plain.chunks)
    assert reads.payload_asked and not any(reads.payload_asked)
    assert reads.reads == [(10, False)]  # one page, not the 2 x 3 hits the two gatherers found
    reads.reads.clear()
    reranked = run(svc.retrieve(ALICE, "router firmware reset", top_k=3, gatherers=gatherers, rerank=True))
    assert len(reranked.chunks) == 3 and all("rerank" in c.scores for c in reranked.chunks)
    assert reads.reads == [(30, True)]  # the rerank head (rerank_depth), with the reranker's vectors
    assert not any(reads.payload_asked)


def test_mmr_reads_every_candidate_in_one_call_and_diversifies(
    searcher: HybridSearcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    searcher.index.upsert(filler(30))
    reads = Reads(searcher.index, monkeypatch)
    plain = service(searcher)
    diverse = service(searcher, defaults=RetrievalDefaults(mmr_lambda=0.3))
    kw = {"top_k": 4, "gatherers": ["product_docs"], "rerank": False}
    before = run(plain.retrieve(ALICE, "router firmware reset", **kw))  # type: ignore[arg-type]
    reads.reads.clear()
    after = run(diverse.retrieve(ALICE, "router firmware reset", **kw))  # type: ignore[arg-type]
    assert len(reads.reads) == 1  # every candidate in one read
    assert len(after.chunks) == 4 and after.chunks[0].chunk_id == before.chunks[0].chunk_id
    assert [c.chunk_id for c in after.chunks] != [c.chunk_id for c in before.chunks]


def test_a_response_never_mixes_two_versions_of_a_document(searcher: HybridSearcher) -> None:
    emb, sparse = BagOfWords(), Bm25SparseEncoder()
    text = "router setup manual v2: reset the router and update firmware"
    (v1,) = searcher.index.retrieve(AccessScope.of(ALICE), [chunk_id("t1", "manual", 1, 0)])
    payload = {**v1.payload, "version": 2, "text": text, "char_end": len(text)}
    # a re-version mid-flight: version 2 is written, version 1 is not deleted yet
    v2 = IndexPoint(chunk_id("t1", "manual", 2, 0), emb.embed_query(text), sparse.encode_document(text), payload)
    searcher.index.upsert([v2])
    svc = service(searcher, reranker=LearnedReranker())
    for rerank in (False, True):
        res = run(svc.retrieve(ALICE, "router setup manual reset firmware", top_k=5, rerank=rerank))
        manual = [c for c in res.chunks if c.doc_id == "manual"]
        assert [(c.version, c.text) for c in manual] == [(2, text)], rerank


def test_an_older_version_read_before_the_newer_one_is_still_dropped(searcher: HybridSearcher) -> None:
    """The newer version may only be read in a later page (dedupe walked past the first one):
    the older chunk, already past dedupe, must still not reach the response."""

    def chunk(doc: str, version: int, text: str) -> RetrievedChunk:
        cid = chunk_id("t1", doc, version, 0)
        return RetrievedChunk(
            doc_id=doc, chunk_id=cid, version=version, chunk_index=0, text=text, char_start=0, char_end=len(text)
        )

    copies = [chunk(f"copy-{i}", 1, "the very same paragraph in every handbook") for i in range(10)]
    ranked = [chunk("a", 1, "version one of a"), *copies, chunk("a", 2, "version two of a"), chunk("b", 1, "b")]
    by_id = {c.chunk_id: c for c in ranked}

    class Backend:
        def chunks(self, principal, ids, *, vectors=False):  # type: ignore[no-untyped-def]
            return {i: (by_id[i], None) for i in ids}

    svc = service(searcher)
    svc._index_backend = Backend()  # type: ignore[assignment]
    hits = [Hit(c.chunk_id, 1.0 / n) for n, c in enumerate(ranked, start=1)]
    kept, dropped = svc._select(ALICE, "a", hits, 3, False, svc.defaults, {})
    assert len(dropped) == 9  # the page of 10 held "a" v1 and copies; "a" v2 came with the next page
    assert [(c.doc_id, c.version) for c in kept] == [("copy-0", 1), ("a", 2)]


def test_mmr_reads_a_long_ranking_in_one_call_not_page_by_page(searcher: HybridSearcher) -> None:
    texts = {chunk_id("t1", f"d{i}", 1, 0): f"note {i} about routers" for i in range(30)}
    calls: list[int] = []

    class Backend:
        def chunks(self, principal, ids, *, vectors=False):  # type: ignore[no-untyped-def]
            calls.append(len(ids))
            made = (
                RetrievedChunk(doc_id=i, chunk_id=i, version=1, chunk_index=0, text=texts[i], char_start=0, char_end=1)
                for i in ids
            )
            return {c.chunk_id: (c, None) for c in made}

    svc = service(searcher, defaults=RetrievalDefaults(mmr_lambda=0.5))
    svc._index_backend = Backend()  # type: ignore[assignment]
    hits = [Hit(cid, 1.0 / n) for n, cid in enumerate(texts, start=1)]
    kept, _ = svc._select(ALICE, "routers", hits, 3, False, svc.defaults, {})
    assert calls == [30] and len(kept) == 3


def test_a_chunk_deleted_between_query_and_read_is_left_out(
    searcher: HybridSearcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = searcher.index
    query_batch = index.query_batch

    def then_delete(queries):  # type: ignore[no-untyped-def]
        found = query_batch(queries)
        index.delete_versions("t1", "manual")  # the document goes while the request is in flight
        return found

    monkeypatch.setattr(index, "query_batch", then_delete)
    for rerank in (False, True):
        res = run(service(searcher, reranker=LearnedReranker()).retrieve(ALICE, "router manual reset", rerank=rerank))
        assert res.chunks and "manual" not in {c.doc_id for c in res.chunks}


def test_gatherer_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "g.yaml"
    bad.write_text("gatherers:\n  - name: x\n    filter: {tags: [a]}\n")
    with pytest.raises(ValueError, match="not valid"):
        GathererRegistry.from_yaml(bad)
    assert GathererSpec(name="c", filters=SearchFilters(tags=["customer:{customer_id}"])).params == {
        "customer_id"
    }
    names = {s.name for s in GathererRegistry.from_yaml().specs()}
    assert {"product_docs", "policies", "customer_history", "similar_tickets"} <= names
