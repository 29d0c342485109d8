"""Zero-downtime reindex: a new generation is built beside the serving one, the alias swaps with
no failed query, the new chunking shows, writes made during the build are replayed, a restart
serves the swapped generation, rollback restores the old one, cleanup drops it. Plus the remote
adapter's alias calls against qdrant-client's local mode."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.models import AccessScope, IndexPoint, Principal, Role, SparseVector
from tests.app.api import ADMIN as ADMIN_KEY
from tests.app.api import Api

pytestmark = pytest.mark.integration
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADMIN = Principal(tenant_id="default", user="admin", role=Role.admin)


def _text(i: int) -> str:
    return "\n\n".join(
        f"Section {s} of handbook {i}. Refunds are paid within {s + 3} days to the original card; "
        f"invoices list the shipping zone {s % 4} and the warehouse code W{i}-{s}. Customers may "
        "return unopened goods, and the support team answers questions about damaged parcels."
        for s in range(40)
    )


class SearchLoop:
    """Searches over HTTP in a background thread until stopped; counts errors and empty answers."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.calls = self.errors = self.empty = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=HEADERS, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/v1/search", json={"query": "refunds to the original card", "top_k": 5})
                except httpx.HTTPError as exc:
                    self.errors += 1
                    self.failures.append(repr(exc))
                    continue
                self.calls += 1
                if r.status_code != 200:
                    self.errors += 1
                    self.failures.append(r.text[:200])
                elif not r.json()["results"]:
                    self.empty += 1

    def __enter__(self) -> SearchLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def _chunk_counts(api: Api, doc_ids: list[str]) -> dict[str, int]:
    out = {}
    for d in doc_ids:
        body = api.client.get(f"/v1/documents/{d}", headers=api.headers).json()
        live = [v for v in body["versions"] if v["version"] == body["current_version"]]
        out[d] = live[0]["chunk_count"]
    return out


def _index_chunks(container: Any, doc_id: str) -> int:
    return len(container.index.chunks_of(AccessScope.of(ADMIN), doc_id))


def _wait_job(client: Any, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=HEADERS).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"reindex {job_id} did not finish")


def test_reindex_swaps_without_failed_queries_and_rolls_back(make_container, live_server, tmp_path: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / "var"
    docs = [f"h{i}" for i in range(12)]
    first = make_container(data)  # default chunking: 256 tokens
    with TestClient(create_app(container=first)) as client:
        api = Api(client)
        for i, d in enumerate(docs):
            api.ingest(f"{d}.txt", _text(i), doc_id=d, acl=["tenant:*"])
        before = _chunk_counts(api, docs)
    first.close()

    # the operator raises the chunk size and restarts; existing documents keep 256-token chunks
    second = make_container(data, chunking={"max_tokens": 600, "overlap_tokens": 32})
    base = live_server(second)
    api = Api(httpx.Client(base_url=base, timeout=60))  # type: ignore[arg-type]
    with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as http, SearchLoop(base) as loop:
        time.sleep(0.5)
        r = http.post("/v1/admin/reindex")
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert http.post("/v1/admin/reindex").status_code == 409  # one at a time
        # writes while it builds: a new document and a deletion, replayed into the new generation
        up = http.post("/v1/documents", files={"file": ("late.txt", _text(99).encode(), "text/plain")},
                       data={"metadata": '{"doc_id": "late", "acl": ["tenant:*"]}'})
        assert up.status_code == 202, up.text
        assert http.delete("/v1/documents/h11").status_code == 204
        job = _wait_job(http, job_id)
        time.sleep(0.5)
    assert job["state"] == "succeeded", job
    assert job["done"] == job["total"] and job["total"] >= 11
    assert loop.calls > 20, loop.calls
    assert loop.errors == 0, loop.failures[:3]
    assert loop.empty == 0

    status = http_get(base, "/v1/admin/reindex")
    assert (status["serving"], status["previous"]) == ("index-g2", "index")
    assert status["runs"][0]["status"] == "swapped"
    after = _chunk_counts(api, docs[:11])
    assert all(after[d] < before[d] for d in docs[:11]), (before, after)  # 600-token chunks: fewer
    assert all(_index_chunks(second, d) == after[d] for d in docs[:11])
    assert _index_chunks(second, "h11") == 0  # deleted during the build: gone from the new generation
    assert api.job(up.json()["job_id"])["state"] == "indexed"
    assert _index_chunks(second, "late") > 0  # uploaded during the build: present in the new one
    second.close()

    # a restart serves the swapped generation; rollback restores the old one; cleanup drops it
    third = make_container(data, chunking={"max_tokens": 600, "overlap_tokens": 32})
    with TestClient(create_app(container=third)) as client:
        api = Api(client)
        assert _index_chunks(third, "h0") == after["h0"]
        r = client.post("/v1/admin/reindex/rollback", headers=HEADERS)
        assert r.status_code == 200, r.text
        assert (r.json()["serving"], r.json()["previous"]) == ("index", "index-g2")
        assert _chunk_counts(api, docs[:11]) == {d: before[d] for d in docs[:11]}
        assert _index_chunks(third, "h0") == before["h0"]
        assert api.search("refunds to the original card")
        r = client.post("/v1/admin/reindex/cleanup", headers=HEADERS)
        assert r.status_code == 200 and r.json()["previous"] is None
        assert not (data / "index-g2").exists()
        r = client.post("/v1/admin/reindex/rollback", headers=HEADERS)
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


def http_get(base: str, path: str) -> dict[str, Any]:
    r = httpx.get(base + path, headers=HEADERS, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_reindex_is_admin_only(make_container) -> None:  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        editor = Api(client).new_key("ed", role="editor")
        r = client.post("/v1/admin/reindex", headers=editor.headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"


# ---- remote adapter: Qdrant aliases in qdrant-client's local mode -----------------------------


def _point(i: int, doc: str) -> IndexPoint:
    from core.models import chunk_id

    dense = [0.0] * 384
    dense[i % 384] = 1.0
    payload = {"tenant_id": "t", "doc_id": doc, "version": 1, "chunk_index": i, "acl": ["tenant:*"], "text": doc}
    return IndexPoint(id=chunk_id("t", doc, 1, i), dense=dense, sparse=SparseVector(indices=[i], values=[1.0]),
                      payload=payload)


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")
def test_qdrant_alias_swap_rollback_and_drop() -> None:
    from qdrant_client import QdrantClient

    from retrieval.index.qdrant_remote import QdrantGenerations, QdrantIndex

    client = QdrantClient(":memory:")
    serving = QdrantIndex(client, "chunks")
    serving.warm_up()  # a new collection is created behind an alias
    gens = QdrantGenerations(client, "chunks")
    assert gens.serving() == "chunks_g1"
    serving.upsert([_point(0, "old")])
    scope = AccessScope("t", ("tenant:*",))

    new_name = gens.next_name(gens.serving())
    assert new_name == "chunks_g2"
    fresh = gens.create(new_name)
    fresh.upsert([_point(1, "new"), _point(2, "new")])
    assert serving.count(scope) == 1  # the alias still serves the old generation
    gens.swap(new_name)
    assert gens.serving() == "chunks_g2"
    assert serving.count(scope) == 2 and serving.chunks_of(scope, "new")  # same index object, new data
    with pytest.raises(Exception, match="cannot be dropped"):
        gens.drop("chunks")
    gens.drop("chunks_g2")  # the served generation is never dropped
    assert client.collection_exists("chunks_g2")

    gens.swap("chunks_g1")  # rollback
    assert serving.count(scope) == 1
    assert gens.next_name(gens.serving()) == "chunks_g3"  # never reuses the kept generation's name
    gens.drop("chunks_g2")
    assert not client.collection_exists("chunks_g2")


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")
def test_qdrant_plain_collection_is_refused_clearly() -> None:
    from qdrant_client import QdrantClient

    from core.errors import IndexFailure
    from retrieval.index.qdrant_remote import QdrantGenerations, QdrantIndex

    client = QdrantClient(":memory:")
    QdrantIndex(client, "legacy", alias=False).warm_up()
    with pytest.raises(IndexFailure, match="plain collection"):
        QdrantGenerations(client, "legacy").serving()
