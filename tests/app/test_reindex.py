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


# ---- claims, the swap and what follows it (driven on the test's thread) ------------------------


def _service(container: Any, **kw: Any) -> Any:
    """A second ReindexService over the container's parts whose runs the test drives itself."""
    from app.services.blobs import BlobStore
    from app.services.reindex import ReindexService

    return ReindexService(container.sessions, BlobStore(container.settings.data_dir / "blobs"), container.pipeline,
                          container.generations, container.index, lambda _id: None, **kw)


def _age_job(container: Any, job_id: str) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from core.tables import Job, utcnow

    with container.sessions.begin() as s:  # silent past stale_after_s: the recovery sweep re-sends it
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(hours=1)))


def _job_age_s(container: Any, job_id: str) -> float:
    from core.tables import Job, utcnow

    with container.sessions() as s:
        job = s.get(Job, job_id)
        updated = job.updated_at if job.updated_at.tzinfo else job.updated_at.replace(tzinfo=utcnow().tzinfo)
        return (utcnow() - updated).total_seconds()


def test_a_run_taken_over_mid_build_never_swaps_to_the_new_claims_generation(make_container, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    container = make_container()
    data = container.settings.data_dir
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        for i in range(3):
            api.ingest(f"h{i}.txt", _text(i), doc_id=f"h{i}", acl=["tenant:*"])
        first, second = _service(container), _service(container)
        run_id = first.start(ADMIN).id
        catch_up = first._catch_up
        taken: list[str] = []

        def taken_over(b: Any) -> int:
            if not taken:  # the first pass ran long: another worker claims the run and starts afresh
                _age_job(container, run_id)
                claim = second._claim(run_id)
                assert claim is not None
                taken.append(second._prepare(run_id, *claim).target)  # a new, still empty generation
            return int(catch_up(b))

        monkeypatch.setattr(first, "_catch_up", taken_over)
        first.run(run_id)
        assert taken == ["index-g3"]
        assert container.generations.serving() == "index"  # not swapped to the half-built index-g3
        run = first.get(run_id)
        assert (run.status, run.target) == ("running", "index-g3")  # the second claim's, untouched
        assert not (data / "index-g2").exists()  # each claim's abandoned build is dropped
        assert (data / "index-g3").exists()
        assert api.search("refunds to the original card")  # the old generation still serves


def test_catch_up_batches_keep_the_run_fresh(make_container) -> None:  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        api.ingest("h0.txt", _text(0), doc_id="h0", acl=["tenant:*"])
        svc = _service(container)
        run_id = svc.start(ADMIN).id
        claim = svc._claim(run_id)
        b = svc._prepare(run_id, *claim)
        _age_job(container, run_id)
        assert svc._catch_up(b) == 1  # nothing built yet: the whole corpus is caught up
        assert _job_age_s(container, run_id) < 60  # the sweep does not take this run for a dead one
        svc._drop_unswapped(b)


def test_a_build_killed_midway_is_dropped_when_the_run_is_claimed_again(make_container) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from core.tables_reindex import ReindexRun

    container = make_container()
    data = container.settings.data_dir
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        api.ingest("h0.txt", _text(0), doc_id="h0", acl=["tenant:*"])
        svc = _service(container)
        run_id = svc.start(ADMIN).id
        claim = svc._claim(run_id)
        svc._prepare(run_id, *claim)  # ...and the process dies here
        assert (data / "index-g2").exists()
        with container.sessions.begin() as s:  # what `recover()` does at the next start
            s.execute(update(ReindexRun).where(ReindexRun.id == run_id).values(status="queued"))
        svc.run(run_id)
        assert svc.get(run_id).status == "swapped"
        assert container.generations.serving() == "index-g3"
        assert not (data / "index-g2").exists()


def test_a_go_live_straddling_the_swap_is_replayed_into_the_new_generation(make_container, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        api.ingest("d.txt", _text(1), doc_id="d", acl=["tenant:*"])
        serving = container.index  # the alias
        upserted, swapped = threading.Event(), threading.Event()

        class StraddlingIndex:
            """d v2 goes live with its chunks written to the old generation just before the swap
            and its SQL row committed just after it (then v1 is deleted from the new one)."""

            def __getattr__(self, name: str) -> Any:
                return getattr(serving, name)

            def upsert(self, points: Any) -> None:
                if points and (points[0].payload["doc_id"], points[0].payload["version"]) == ("d", 2):
                    serving.target.upsert(points)
                    upserted.set()
                    assert swapped.wait(60)
                    time.sleep(0.5)  # the reindex's catch-up after the swap runs now
                    return
                serving.upsert(points)

        swap = container.generations.swap

        def swap_and_tell(name: str) -> None:
            swap(name)
            swapped.set()

        monkeypatch.setattr(container.documents, "_index", StraddlingIndex())
        monkeypatch.setattr(container.generations, "swap", swap_and_tell)
        r = api.upload("d.txt", _text(2).encode(), {"doc_id": "d", "acl": ["tenant:*"]})
        assert r.status_code == 202, r.text
        assert upserted.wait(60)
        run_id = container.reindex.start(ADMIN).id
        assert _wait_job(client, run_id)["state"] == "succeeded"
        assert api.wait(r.json()["job_id"])["state"] == "indexed"
        assert container.generations.serving() == "index-g2"
        hits = container.index.chunks_of(AccessScope.of(ADMIN), "d")
        assert hits and {h.payload["version"] for h in hits} == {2}


@pytest.mark.parametrize("trouble", ["shutdown", "missing original"])
def test_trouble_after_the_swap_still_finishes_swapped(make_container, monkeypatch, trouble: str) -> None:  # type: ignore[no-untyped-def]
    from core.errors import CairnError

    container = make_container()
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        api.ingest("h0.txt", _text(0), doc_id="h0", acl=["tenant:*"])
        svc = _service(container)
        swap = container.generations.swap

        def swap_then_trouble(name: str) -> None:
            swap(name)
            api.ingest("late.txt", _text(7), doc_id="late", acl=["tenant:*"])  # the catch-up redoes it
            if trouble == "shutdown":
                svc.stop()

        monkeypatch.setattr(container.generations, "swap", swap_then_trouble)
        if trouble == "missing original":
            real_input = svc._input

            def missing(tenant_id: str, doc_id: str, version: int) -> Any:
                if doc_id == "late":
                    raise CairnError("the stored original of document 'late' is missing")
                return real_input(tenant_id, doc_id, version)

            monkeypatch.setattr(svc, "_input", missing)
        run_id = svc.start(ADMIN).id
        svc.run(run_id)
        run = svc.get(run_id)
        assert run.status == "swapped", run
        assert api.job(run_id)["state"] == "succeeded"
        assert container.generations.serving() == "index-g2"
        if trouble == "missing original":
            assert run.failed_docs == 1 and run.error and "late" in run.error
        else:
            assert run.error is None
        assert _index_chunks(container, "late") > 0 and _index_chunks(container, "h0") > 0


def test_qdrant_generations_close_the_client_they_were_built_with(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import qdrant_client

    from app.container import build_generations
    from core.settings import Settings

    made: list[Any] = []

    class FakeClient:
        def __init__(self, **kw: Any) -> None:
            self.closed = 0
            made.append(self)

        def close(self) -> None:
            self.closed += 1

    monkeypatch.setattr(qdrant_client, "QdrantClient", FakeClient)
    gens = build_generations(Settings(qdrant_url="http://127.0.0.1:1"), index=None)  # type: ignore[arg-type]
    gens.close()
    gens.close()
    assert [c.closed for c in made] == [1]
