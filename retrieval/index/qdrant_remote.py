"""`VectorIndex` on a Qdrant server or cluster through qdrant-client, the scale-out deployment.

The only module that imports `qdrant_client`. It is a mechanical translation of `EdgeIndex`:
the same rules (`_common`) in qdrant-client's pydantic models. What the client and server do
for the features the Protocol relies on (qdrant-client 1.20):

* Hybrid queries: two prefetches (dense, sparse), each carrying the full tenant + ACL + user
  filter, fused by the server with `RrfQuery(Rrf(k, weights))` or `FusionQuery(DBSF)`.
  Weighted RRF is native (`Rrf.weights`); weighted DBSF does not exist in Qdrant, so
  `weights` with `fusion="dbsf"` is refused (`InvalidInput`) in both adapters, not ignored.
* Per-tenant sparse IDF: `SearchParams(idf=IdfCorpusParams(corpus=tenant filter))` on the
  sparse prefetch. qdrant-client 1.20 sends it and its local mode honours it; a server that
  predates the `idf` search parameter rejects the request, which surfaces as `IndexFailure`
  rather than silently falling back to collection-wide IDF.
* `tenant_id` gets a keyword index with `is_tenant=True`, which a server uses to co-locate a
  tenant's points. Local mode (`QdrantClient(":memory:")`, used in tests) ignores payload
  indexes and warns that it does.
* HNSW is built by the server in the background; there is no `optimize()` here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from qdrant_client import QdrantClient, models

from core.errors import CairnError, IndexFailure, InvalidInput
from core.models import AccessScope, AnyOf, Condition, IndexFilter, IndexHit, IndexPoint, IndexQuery, MatchAny
from retrieval.index import _common as c

_log = logging.getLogger(__name__)

_SCHEMA: dict[str, Any] = {
    "tenant": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
}


@contextmanager
def _server(action: str) -> Iterator[None]:
    """Turn any client/transport exception into an `IndexFailure` whose message is safe."""
    try:
        yield
    except CairnError:
        raise
    except Exception as exc:
        _log.exception("qdrant server failed to %s", action)
        raise IndexFailure(
            f"the Qdrant vector index failed to {action}; check that the server is reachable "
            "and see the server log"
        ) from exc


def _condition(cond: Condition) -> models.FieldCondition | models.Filter:
    if isinstance(cond, AnyOf):
        return models.Filter(should=[_all_of(option) for option in cond.options])
    if isinstance(cond, MatchAny):
        match: Any = (
            models.MatchValue(value=cond.values[0])
            if len(cond.values) == 1
            else models.MatchAny(any=list(cond.values))  # type: ignore[arg-type]
        )
        return models.FieldCondition(key=cond.key, match=match)
    rng = models.Range(gte=cond.gte, gt=cond.gt, lte=cond.lte, lt=cond.lt)
    return models.FieldCondition(key=cond.key, range=rng)


def _all_of(conds: tuple[Condition, ...]) -> models.FieldCondition | models.Filter:
    return _condition(conds[0]) if len(conds) == 1 else models.Filter(must=[_condition(x) for x in conds])


def _to_filter(f: IndexFilter) -> models.Filter:
    return models.Filter(
        must=[_condition(x) for x in f.must] or None,
        must_not=[_condition(x) for x in f.must_not] or None,
    )


class QdrantIndex:
    """One collection on a Qdrant server; cheap to construct, connected by `warm_up()`.

    `client_or_url` is a URL (the index then owns, and closes, its client) or an existing
    `QdrantClient`, which stays the caller's to close.
    """

    def __init__(
        self,
        client_or_url: QdrantClient | str,
        collection: str,
        dense_dim: int = 384,
        api_key: str | None = None,
        *,
        upsert_batch: int = 512,
        timeout_s: int = 30,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        alias: bool = True,
    ) -> None:
        if not collection:
            raise ValueError("collection must be a non-empty collection name")
        if dense_dim < 1:
            raise ValueError(f"dense_dim must be a positive number of dimensions, got {dense_dim}")
        if upsert_batch < 1:
            raise ValueError(f"upsert_batch must be >= 1, got {upsert_batch}")
        for name, value in (
            ("shard_number", shard_number), ("replication_factor", replication_factor),
            ("write_consistency_factor", write_consistency_factor),
        ):  # fmt: skip
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None for the server's default), got {value}")
        # distributed mode only; applied when this index creates the collection (an existing
        # collection keeps its layout: change it with Qdrant's own API)
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self.write_consistency_factor = write_consistency_factor
        # a new collection is created as `<collection>_g1` behind an alias named `collection`,
        # so a reindex can later swap the alias to a rebuilt generation (`QdrantGenerations`)
        self._alias = alias
        self._target = client_or_url
        self._owns_client = not isinstance(client_or_url, QdrantClient)
        self._api_key = api_key
        self._timeout = timeout_s
        self.collection = collection
        self.dense_dim = dense_dim
        self._batch = upsert_batch
        self._client: QdrantClient | None = None

    def warm_up(self) -> None:
        """Create the collection and any missing payload index; check an existing one fits."""
        if self._client is not None:
            return
        with _server("connect"):
            client = (
                QdrantClient(url=self._target, api_key=self._api_key, timeout=self._timeout)
                if isinstance(self._target, str)
                else self._target
            )
        with _server("prepare the collection"):
            if not client.collection_exists(self.collection):
                concrete = f"{self.collection}_g1" if self._alias else self.collection
                client.create_collection(
                    concrete,
                    vectors_config={
                        c.DENSE: models.VectorParams(size=self.dense_dim, distance=models.Distance.COSINE)
                    },
                    sparse_vectors_config={c.SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                    shard_number=self.shard_number,
                    replication_factor=self.replication_factor,
                    write_consistency_factor=self.write_consistency_factor,
                )
                if self._alias:
                    create = _create_alias(self.collection, concrete)
                    client.update_collection_aliases(change_aliases_operations=[create])
            info = client.get_collection(self.collection)
        vectors = info.config.params.vectors
        dense = vectors.get(c.DENSE) if isinstance(vectors, dict) else None
        if dense is None or dense.size != self.dense_dim:
            raise IndexFailure(
                f"collection {self.collection!r} exists but has no {self.dense_dim}-d 'dense' vector; "
                "use another collection name or re-index"
            )
        with _server("create payload indexes"):
            have = set(info.payload_schema or {})
            for field, kind in c.payload_indexes():
                if field not in have:
                    client.create_payload_index(self.collection, field, field_schema=_SCHEMA[kind], wait=True)
        self._client = client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            with _server("close the connection"):
                client.close()

    def _open(self) -> QdrantClient:
        if self._client is None:
            raise IndexFailure("the Qdrant index is not connected; call warm_up() first")
        return self._client

    # ---- writes -------------------------------------------------------------------------

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Column-wise `Batch`es: one pydantic object per batch instead of one per point."""
        client = self._open()
        dim = self.dense_dim
        if any(len(p.dense) != dim for p in points):
            raise InvalidInput(f"every dense vector must have {dim} dimensions")
        sv = models.SparseVector
        for start in range(0, len(points), self._batch):
            part = points[start : start + self._batch]
            batch = models.Batch(
                ids=[p.id for p in part],
                vectors={
                    c.DENSE: [p.dense for p in part],
                    c.SPARSE: [sv(indices=p.sparse.indices, values=p.sparse.values) for p in part],
                },
                payloads=[p.payload for p in part],
            )
            with _server("store points"):
                client.upsert(self.collection, points=batch, wait=True)

    def delete_versions(
        self, tenant_id: str, doc_id: str, *, below: int | None = None, only: int | None = None
    ) -> None:
        selector = models.FilterSelector(filter=_to_filter(c.versions_filter(tenant_id, doc_id, below, only)))
        with _server("delete a document's chunks"):
            self._open().delete(self.collection, points_selector=selector, wait=True)

    # ---- reads (all scoped) -------------------------------------------------------------

    def _request(self, q: IndexQuery) -> models.QueryRequest:
        c.validate_query(q, self.dense_dim)
        flt = _to_filter(c.scoped(q.scope, q.filter))
        idf = models.SearchParams(
            idf=models.IdfCorpusParams(corpus=_to_filter(c.tenant_only(q.scope.tenant_id)))
        )
        sparse = (
            models.SparseVector(indices=q.sparse.indices, values=q.sparse.values)
            if q.sparse is not None
            else None
        )
        common: dict[str, Any] = {"limit": q.limit, "with_payload": q.with_payload}
        if q.dense is not None and sparse is not None:
            fusion: Any = (
                models.FusionQuery(fusion=models.Fusion.DBSF)
                if q.fusion == "dbsf"
                else models.RrfQuery(
                    rrf=models.Rrf(k=q.rrf_k, weights=list(q.weights) if q.weights else None)
                )
            )
            return models.QueryRequest(
                query=fusion,
                prefetch=[
                    models.Prefetch(query=q.dense, using=c.DENSE, filter=flt, limit=q.prefetch_limit),
                    models.Prefetch(
                        query=sparse, using=c.SPARSE, filter=flt, limit=q.prefetch_limit, params=idf
                    ),
                ],
                **common,
            )
        if q.dense is not None:
            return models.QueryRequest(query=q.dense, using=c.DENSE, filter=flt, **common)
        return models.QueryRequest(query=sparse, using=c.SPARSE, filter=flt, params=idf, **common)

    def query(self, q: IndexQuery) -> list[IndexHit]:
        return self.query_batch([q])[0]

    def query_batch(self, queries: Sequence[IndexQuery]) -> list[list[IndexHit]]:
        """One round trip for several queries (`query_batch_points`)."""
        if not queries:
            return []
        requests = [self._request(q) for q in queries]
        with _server("search"):
            found = self._open().query_batch_points(self.collection, requests=requests)
        return [[c.hit(p) for p in response.points] for response in found]

    def count(self, scope: AccessScope, filter: IndexFilter | None = None) -> int:
        flt = _to_filter(c.scoped(scope, filter))
        with _server("count points"):
            return int(self._open().count(self.collection, count_filter=flt, exact=True).count)

    def chunks_of(self, scope: AccessScope, doc_id: str, version: int | None = None) -> list[IndexHit]:
        flt = _to_filter(c.scoped(scope, c.chunk_filter(doc_id, version)))
        client = self._open()
        hits: list[IndexHit] = []
        offset: Any = None
        with _server("list a document's chunks"):
            while True:
                records, offset = client.scroll(
                    self.collection,
                    scroll_filter=flt,
                    limit=c.SCROLL_PAGE,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
                hits.extend(c.hit(r) for r in records)
                if offset is None:
                    break
        return c.in_chunk_order(hits)

    def retrieve(self, scope: AccessScope, ids: Sequence[str], *, vectors: bool = False) -> list[IndexHit]:
        """A scroll over the ids AND the scoped filter, so the server filters (as `EdgeIndex`)."""
        wanted = c.point_ids(ids)
        if not wanted:
            return []
        f = c.scoped(scope)
        has_id = models.HasIdCondition(has_id=list(wanted))
        flt = models.Filter(
            must=[*(_condition(x) for x in f.must), has_id], must_not=[_condition(x) for x in f.must_not] or None
        )
        with _server("fetch points"):
            records, _ = self._open().scroll(
                self.collection,
                scroll_filter=flt,
                limit=len(wanted),
                with_payload=True,
                with_vectors=[c.DENSE] if vectors else False,
            )
        return c.in_request_order((c.hit(r, vectors) for r in records), wanted)


def _create_alias(alias: str, collection: str) -> models.CreateAliasOperation:
    return models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))


class QdrantGenerations:
    """Collection generations behind one Qdrant alias, for a zero-downtime reindex: build
    `<alias>_g<n+1>` beside the serving collection, then move the alias in one
    `update_collection_aliases` call (Qdrant applies the delete + create atomically, so no
    query ever finds the alias missing). Readers and writers only ever name the alias.

    `owns_client`: `close()` closes the client (the caller made it for this object alone)."""

    def __init__(self, client: QdrantClient, alias: str, dense_dim: int = 384, *, owns_client: bool = False,
                 **layout: int | None) -> None:
        self._client = client
        self._owns_client = owns_client
        self.alias = alias
        self._dim = dense_dim
        self._layout = layout

    def close(self) -> None:
        if self._owns_client:
            self._owns_client = False
            self._client.close()

    def serving(self) -> str:
        """The collection the alias points at. A collection created before aliases existed
        (named like the alias itself) cannot be swapped without a gap: that is refused."""
        with _server("read the collection aliases"):
            found = [a.collection_name for a in self._client.get_aliases().aliases if a.alias_name == self.alias]
            legacy = not found and self._client.collection_exists(self.alias)
        if legacy:
            raise IndexFailure(
                f"{self.alias!r} is a plain collection, not an alias, so it cannot be swapped without downtime; "
                "set CAIRN_QDRANT_COLLECTION to a new name and ingest again (new collections get an alias)"
            )
        if not found:
            raise IndexFailure(f"the Qdrant alias {self.alias!r} does not exist yet; start the server once first")
        return found[0]

    def next_name(self, serving: str) -> str:
        """One past the highest generation the server has, so a kept rollback target is never reused."""
        with _server("list collections"):
            names = [c.name for c in self._client.get_collections().collections]
        prefix = f"{self.alias}_g"
        tails = [n[len(prefix) :] for n in [*names, serving] if n.startswith(prefix)]
        numbers = [int(t) for t in tails if t.isdigit()]
        return f"{prefix}{max([1, *numbers]) + 1}"

    def create(self, name: str) -> QdrantIndex:
        """A new, empty generation (a leftover of the same name from an interrupted run is dropped)."""
        self.drop(name)
        index = QdrantIndex(self._client, name, self._dim, alias=False, **self._layout)  # type: ignore[arg-type]
        index.warm_up()
        return index

    def open(self, name: str) -> QdrantIndex:
        with _server("find a collection generation"):
            if not self._client.collection_exists(name):
                raise IndexFailure(f"collection generation {name!r} no longer exists")
        index = QdrantIndex(self._client, name, self._dim, alias=False, **self._layout)  # type: ignore[arg-type]
        index.warm_up()
        return index

    def swap(self, name: str) -> None:
        ops: list[Any] = [
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias)),
            _create_alias(self.alias, name),
        ]
        with _server("swap the collection alias"):
            self._client.update_collection_aliases(change_aliases_operations=ops)

    def drop(self, name: str) -> None:
        if name == self.alias:
            raise InvalidInput("the alias itself cannot be dropped")
        with _server("drop a collection generation"):
            if self._client.collection_exists(name) and name not in self._alias_targets():
                self._client.delete_collection(name)

    def _alias_targets(self) -> set[str]:
        return {a.collection_name for a in self._client.get_aliases().aliases if a.alias_name == self.alias}
