"""One contract for every `VectorIndex` adapter: the embedded engine on a temp directory and
qdrant-client's local mode standing in for a server. Edge-only behaviour is at the bottom."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from core.errors import IndexFailure, InvalidInput
from core.models import (
    EFFECTIVE_MAX_TS,
    EFFECTIVE_MIN_TS,
    AccessScope,
    IndexFilter,
    IndexPoint,
    IndexQuery,
    MatchAny,
    SearchFilters,
    chunk_id,
)
from core.protocols import VectorIndex
from retrieval.filters import build_index_filter
from retrieval.index import EdgeIndex, QdrantIndex, _common
from retrieval.sparse import Bm25SparseEncoder

pytestmark = [
    pytest.mark.integration,
    # qdrant-client's local mode warns that it ignores payload indexes; a server honours them.
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

DIM = 8
ENC = Bm25SparseEncoder(avg_doc_len=6)
ALICE = AccessScope("acme", ("user:alice", "group:eng", "tenant:*"))
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def unit(i: int) -> list[float]:
    """Axis-aligned vectors: chunk i is the nearest neighbour of unit(i) and nothing else."""
    v = [0.01] * DIM
    v[i % DIM] = 1.0
    return v


def point(
    doc: str,
    index: int,
    text: str,
    *,
    tenant: str = "acme",
    version: int = 1,
    acl: tuple[str, ...] = ("group:eng",),
    dense: list[float] | None = None,
    **payload: Any,
) -> IndexPoint:
    body = {
        "tenant_id": tenant,
        "doc_id": doc,
        "version": version,
        "chunk_index": index,
        "text": text,
        "acl": list(acl),
        "tags": [],
        "policy_tags": [],
        "effective_from_ts": EFFECTIVE_MIN_TS,
        "effective_to_ts": EFFECTIVE_MAX_TS,
        **payload,
    }
    pid = chunk_id(tenant, doc, version, index)
    return IndexPoint(pid, dense or unit(index), ENC.encode_document(text), body)


@pytest.fixture
def shard_dir(tmp_path: Path) -> Iterator[Path]:
    """A RAM-backed directory where there is one: each payload index the engine creates costs an
    fsync (~0.1 s on these disks), which would make every test start seconds slower."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path / "shard"
        return
    base = Path(tempfile.mkdtemp(prefix="cairn-test-", dir=shm))
    try:
        yield base / "shard"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["edge", "qdrant"])
def index(request: pytest.FixtureRequest, shard_dir: Path) -> Iterator[VectorIndex]:
    client = None
    idx: VectorIndex
    if request.param == "edge":
        idx = EdgeIndex(shard_dir, dense_dim=DIM)
    else:
        client = QdrantClient(":memory:")
        idx = QdrantIndex(client, "chunks", dense_dim=DIM)
    idx.warm_up()
    yield idx
    idx.close()
    if client is not None:
        client.close()


def q(**kw: Any) -> IndexQuery:
    return IndexQuery(scope=kw.pop("scope", ALICE), **kw)


def test_adapters_satisfy_the_protocol(index: VectorIndex) -> None:
    assert isinstance(index, VectorIndex)
    index.warm_up()  # idempotent


def test_dense_sparse_and_hybrid_queries(index: VectorIndex) -> None:
    index.upsert(
        [
            point("d1", 0, "quarterly revenue grew in europe"),
            point("d1", 1, "vacation policy for new employees"),
            point("d2", 2, "revenue recognition rules for contracts"),
        ]
    )
    dense = index.query(q(dense=unit(1), limit=2))
    assert dense[0].id == chunk_id("acme", "d1", 1, 1)
    assert dense[0].payload["text"].startswith("vacation")
    assert all(isinstance(h.id, str) for h in dense)

    sparse = index.query(q(sparse=ENC.encode_query("revenue contracts")))
    assert sparse[0].id == chunk_id("acme", "d2", 1, 2)
    assert {h.payload["doc_id"] for h in sparse} == {"d1", "d2"}

    for fusion in ("rrf", "dbsf"):
        # d2 is first in both lists ("revenue" alone tied d2 with "quarterly revenue ..." in BM25,
        # and with a dense tie behind it the fused order was a coin toss: the old flake)
        hybrid = index.query(
            q(dense=unit(2), sparse=ENC.encode_query("revenue contracts"), fusion=fusion, limit=3)
        )
        assert hybrid[0].id == chunk_id("acme", "d2", 1, 2)
        assert len(hybrid) == 3

    bare = index.query(q(dense=unit(0), limit=1, with_payload=False))
    assert bare[0].payload == {}


def test_weighted_rrf_leans_towards_the_heavier_list(index: VectorIndex) -> None:
    # dense favours "a" (no query term), sparse favours "b"
    index.upsert([point("a", 0, "unrelated words here"), point("b", 5, "invoice invoice approval")])
    base = q(dense=unit(0), sparse=ENC.encode_query("invoice approval"), limit=2, rrf_k=1)
    towards_dense = index.query(IndexQuery(**{**base.__dict__, "weights": (5.0, 0.2)}))
    towards_sparse = index.query(IndexQuery(**{**base.__dict__, "weights": (0.2, 5.0)}))
    assert towards_dense[0].payload["doc_id"] == "a"
    assert towards_sparse[0].payload["doc_id"] == "b"


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"dense": [1.0, 0.0]},
        {"dense": unit(0), "sparse": ENC.encode_query("x"), "fusion": "dbsf", "weights": (1.0, 2.0)},
        {"dense": unit(0), "limit": 0},
    ],
)
def test_invalid_queries_are_refused_not_degraded(index: VectorIndex, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        index.query(q(**bad))


def test_other_tenants_and_foreign_acls_are_never_visible(index: VectorIndex) -> None:
    text = "secret merger plan"
    mine = point("d1", 0, text, acl=("user:alice",))
    shared = point("d1", 1, text, acl=("tenant:*",))
    other_tenant = point("d1", 0, text, tenant="globex", acl=("user:alice", "tenant:*"))
    other_acl = point("d1", 2, text, acl=("group:legal",))
    index.upsert([mine, shared, other_tenant, other_acl])
    allowed = {mine.id, shared.id}
    for query in (
        q(dense=unit(0), limit=10),
        q(sparse=ENC.encode_query(text), limit=10),
        q(dense=unit(2), sparse=ENC.encode_query(text), limit=10),
    ):
        assert {h.id for h in index.query(query)} == allowed
    assert index.count(ALICE) == 2
    assert {h.id for h in index.chunks_of(ALICE, "d1")} == allowed
    assert {
        h.id for h in index.retrieve(ALICE, [p.id for p in (mine, shared, other_tenant, other_acl)])
    } == allowed
    globex_bob = AccessScope("globex", ("user:bob",))
    assert index.count(globex_bob) == 0
    assert index.retrieve(globex_bob, [other_tenant.id]) == []
    assert index.query(q(scope=globex_bob, dense=unit(0))) == []


def test_user_filters_and_effective_dates_run_in_the_engine(index: VectorIndex) -> None:
    index.upsert(
        [
            point("hr", 0, "leave policy", tags=["hr"], policy_tags=["internal"]),
            point("fin", 1, "budget policy", tags=["finance"], policy_tags=["confidential"]),
            point("old", 2, "old policy", effective_to_ts=NOW.timestamp() - 1),
            point("future", 3, "new policy", effective_from_ts=NOW.timestamp() + 1),
        ]
    )
    in_force = build_index_filter(None, NOW)
    assert index.count(ALICE, in_force) == 2
    assert index.count(ALICE, build_index_filter(SearchFilters(tags=["hr", "x"]), NOW)) == 1
    no_conf = build_index_filter(SearchFilters(exclude_policy_tags=["confidential"]), NOW)
    hits = index.query(q(sparse=ENC.encode_query("policy"), filter=no_conf))
    assert [h.payload["doc_id"] for h in hits] == ["hr"]
    past = build_index_filter(SearchFilters(as_of=datetime(2020, 1, 1, tzinfo=UTC)), NOW)
    assert {h.payload["doc_id"] for h in index.query(q(dense=unit(2), filter=past))} == {"hr", "fin", "old"}
    assert index.count(ALICE, IndexFilter(must=(MatchAny("version", (1, 2)),))) == 4


def test_effective_dates_hold_for_points_written_with_and_without_the_effective_keyword(
    index: VectorIndex,
) -> None:
    """Ingestion marks undated documents `effective=always` (one keyword check in the engine);
    dated ones `dated`; points from before the field existed have neither and are judged on their
    dates alone, as before."""
    day = 86_400
    index.upsert(
        [
            point("undated", 0, "policy", effective="always"),
            point("legacy", 1, "policy"),  # no `effective` field
            point("in_force", 2, "policy", effective="dated", effective_from_ts=NOW.timestamp() - day),
            point("expired", 3, "policy", effective="dated", effective_to_ts=NOW.timestamp() - day),
            point("legacy_expired", 4, "policy", effective_to_ts=NOW.timestamp() - day),
            point("not_yet", 5, "policy", effective="dated", effective_from_ts=NOW.timestamp() + day),
        ]
    )

    def visible(at: datetime) -> set[str]:
        flt = build_index_filter(SearchFilters(as_of=at), NOW)
        hits = index.query(q(dense=unit(0), sparse=ENC.encode_query("policy"), filter=flt, limit=10))
        assert index.count(ALICE, flt) == len(hits)
        return {h.payload["doc_id"] for h in hits}

    assert visible(NOW) == {"undated", "legacy", "in_force"}
    assert visible(NOW - 2 * timedelta(days=1)) == {"undated", "legacy", "expired", "legacy_expired"}
    assert visible(NOW + 2 * timedelta(days=1)) == {"undated", "legacy", "in_force", "not_yet"}


def test_delete_versions_all_older_or_one(index: VectorIndex) -> None:
    def versions() -> list[tuple[int, int]]:
        return [(h.payload["version"], h.payload["chunk_index"]) for h in index.chunks_of(ALICE, "d")]

    index.upsert(
        [
            point("d", 0, "v1", version=1),
            point("d", 0, "v2", version=2),
            point("d", 1, "v2", version=2),
            point("d", 0, "v3", version=3),
            point("keep", 0, "other doc"),
            point("d", 0, "other tenant", tenant="globex"),
        ]
    )
    index.delete_versions("acme", "d", below=2)
    assert versions() == [(2, 0), (2, 1), (3, 0)]
    index.delete_versions("acme", "d", only=3)
    assert versions() == [(2, 0), (2, 1)]
    index.delete_versions("acme", "d")
    assert versions() == []
    assert index.count(ALICE) == 1
    assert index.count(AccessScope("globex", ("group:eng",))) == 1
    with pytest.raises(InvalidInput):
        index.delete_versions("acme", "")
    with pytest.raises(InvalidInput):
        index.delete_versions("acme", "d", below=2, only=1)


def test_chunks_of_pages_and_orders_by_chunk_index(
    index: VectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_common, "SCROLL_PAGE", 2)
    index.upsert(
        [point("long", i, f"part {i}") for i in (4, 0, 3, 1, 2)] + [point("long", 0, "v2", version=2)]
    )
    assert [h.payload["chunk_index"] for h in index.chunks_of(ALICE, "long", version=1)] == [0, 1, 2, 3, 4]
    assert [h.payload["text"] for h in index.chunks_of(ALICE, "long", version=2)] == ["v2"]


def test_retrieve_keeps_request_order_and_skips_unknown_ids(index: VectorIndex) -> None:
    pts = [point("d", i, f"chunk {i}") for i in range(3)]
    index.upsert(pts)
    ids = [pts[2].id, "not-a-uuid", chunk_id("acme", "missing", 1, 0), pts[0].id, pts[2].id]
    assert [h.id for h in index.retrieve(ALICE, ids)] == [pts[2].id, pts[0].id]
    assert index.retrieve(ALICE, []) == []


def test_retrieve_filters_in_the_engine_and_reads_vectors_only_when_asked(index: VectorIndex) -> None:
    mine = point("d", 0, "mine", dense=[3.0] + [0.0] * (DIM - 1))
    other_acl = point("d", 1, "legal only", acl=("group:legal",))
    other_tenant = point("d", 0, "theirs", tenant="globex", acl=("tenant:*",))
    index.upsert([mine, other_acl, other_tenant])
    ids = [other_tenant.id, mine.id, other_acl.id, "not-a-uuid", chunk_id("acme", "missing", 1, 0)]
    (got,) = index.retrieve(ALICE, ids, vectors=True)
    assert got.id == mine.id and got.payload["text"] == "mine"
    assert got.dense == pytest.approx([1.0] + [0.0] * (DIM - 1), abs=1e-3)  # cosine: stored normalised
    assert [h.dense for h in index.retrieve(ALICE, ids)] == [None]
    theirs = index.retrieve(AccessScope("globex", ("tenant:*",)), ids, vectors=True)
    assert [(h.id, h.payload["text"]) for h in theirs] == [(other_tenant.id, "theirs")]


def test_upserting_the_same_chunk_id_overwrites(index: VectorIndex) -> None:
    index.upsert([point("d", 0, "first")])
    index.upsert([point("d", 0, "second")])
    assert index.count(ALICE) == 1
    assert index.chunks_of(ALICE, "d")[0].payload["text"] == "second"


def test_sparse_idf_is_per_tenant(index: VectorIndex) -> None:
    """Another tenant's documents must not change (or reveal anything through) BM25 scores."""
    index.upsert([point("a", i, t) for i, t in enumerate(["alpha beta", "alpha gamma", "delta"])])
    queries = [
        q(sparse=ENC.encode_query("alpha delta")),
        q(dense=unit(1), sparse=ENC.encode_query("alpha delta"), fusion="dbsf"),  # score-based fusion
    ]
    before = [[(h.id, round(h.score, 5)) for h in index.query(x)] for x in queries]
    index.upsert([point("b", i, "delta delta", tenant="globex") for i in range(20)])
    after = [[(h.id, round(h.score, 5)) for h in index.query(x)] for x in queries]
    assert after == before


def test_engine_errors_become_index_failures(index: VectorIndex) -> None:
    bad = IndexPoint("not-a-uuid", unit(0), ENC.encode_document("x"), {"tenant_id": "acme"})
    with pytest.raises(IndexFailure) as err:
        index.upsert([bad])
    assert "not-a-uuid" not in err.value.message
    with pytest.raises(InvalidInput):
        index.upsert([IndexPoint(chunk_id("acme", "d", 1, 0), [1.0], ENC.encode_document("x"), {})])


# ---- embedded engine only ------------------------------------------------------------------


def test_edge_data_survives_close_and_reopen(tmp_path: Path) -> None:
    shard_dir = tmp_path / "shard"  # a real disk, not the RAM directory
    first = EdgeIndex(shard_dir, dense_dim=DIM)
    first.warm_up()
    first.upsert([point("d", i, f"chunk {i}") for i in range(3)])
    first.close()
    first.close()  # idempotent
    second = EdgeIndex(shard_dir, dense_dim=DIM)
    second.warm_up()
    try:
        assert [h.payload["chunk_index"] for h in second.chunks_of(ALICE, "d")] == [0, 1, 2]
        assert second.optimize() is False  # exact search: nothing to index
    finally:
        second.close()
    with pytest.raises(IndexFailure, match="different vector configuration"):
        EdgeIndex(shard_dir, dense_dim=DIM + 1).warm_up()


def test_edge_directory_has_a_single_owner(shard_dir: Path) -> None:
    owner = EdgeIndex(shard_dir, dense_dim=DIM)
    owner.warm_up()
    try:
        with pytest.raises(IndexFailure, match="another process"):
            EdgeIndex(shard_dir, dense_dim=DIM).warm_up()
    finally:
        owner.close()


def test_edge_refuses_use_before_warm_up(shard_dir: Path) -> None:
    with pytest.raises(IndexFailure, match="warm_up"):
        EdgeIndex(shard_dir, dense_dim=DIM).count(ALICE)


def test_edge_shard_serves_queries_while_another_thread_upserts(shard_dir: Path) -> None:
    idx = EdgeIndex(shard_dir, dense_dim=DIM, upsert_batch=50)
    idx.warm_up()
    idx.upsert([point("seed", 0, "anchor document")])
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(10):
                idx.upsert([point(f"w{n}", i, f"bulk text {i}", dense=unit(1 + i % 7)) for i in range(100)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        seen: list[int] = []
        try:
            for _ in range(100):
                hits = idx.query(q(dense=unit(0), sparse=ENC.encode_query("anchor bulk"), limit=5))
                assert hits and hits[0].payload["doc_id"] == "seed"
                seen.append(idx.count(ALICE))
            assert seen == sorted(seen)  # a reader never sees points disappear
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=read), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert idx.count(ALICE) == 1 + 10 * 100
    finally:
        idx.close()


def test_query_batch_answers_each_query_as_if_alone_and_stays_scoped(index: VectorIndex) -> None:
    index.upsert(
        [
            point("d1", 0, "quarterly revenue grew in europe"),
            point("d2", 1, "revenue recognition rules", acl=("group:hr",)),
            point("d3", 2, "vacation policy for new employees"),
        ]
    )
    sparse = ENC.encode_query("revenue policy")
    queries = [
        q(dense=unit(0), limit=3),
        q(sparse=sparse, limit=3),
        q(dense=unit(2), sparse=sparse, limit=3, prefetch_limit=3),
        q(dense=unit(1), limit=3, filter=IndexFilter(must=(MatchAny("doc_id", ("d2",)),))),
    ]
    batched = index.query_batch(queries)
    assert [[h.id for h in hits] for hits in batched] == [[h.id for h in index.query(x)] for x in queries]
    assert batched[3] == []  # d2 is hr-only: a batch cannot read past the scope either
    assert index.query_batch([]) == []
