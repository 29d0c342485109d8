"""Evaluation jobs end to end through HTTP: BEIR upload -> ingestion -> eval job -> stored scores,
per-query detail, compare, baseline + regression, and who may read what."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.models import Role
from retrieval.evaluation import evaluate_run
from tests.app import beir_fixture
from tests.app.api import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def api(make_container):  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        yield Api(client)


def upload_dataset(api: Api, files: dict[str, bytes], name: str = "tiny") -> dict[str, Any]:
    multipart = [("files", (n, data, "application/octet-stream")) for n, data in files.items()]
    r = api.client.post("/v1/eval-datasets", headers=api.headers, files=multipart, data={"name": name})
    assert r.status_code == 201, r.text
    return r.json()


def run_eval(api: Api, dataset_id: str, **body: Any) -> dict[str, Any]:
    r = api.client.post("/v1/evals", headers=api.headers, json={"dataset_id": dataset_id, **body})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = api.client.get(f"/v1/evals/{run_id}", headers=api.headers).json()
        if run["status"] in ("succeeded", "failed"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"eval {run_id} did not finish: {run}")


def per_query(api: Api, run_id: str, config: str) -> dict[str, dict[str, Any]]:
    r = api.client.get(f"/v1/evals/{run_id}/queries", headers=api.headers, params={"config": config})
    assert r.status_code == 200, r.text
    return {row["query_id"]: row for row in r.json()["data"]}


def test_beir_dataset_is_evaluated_per_config_with_per_query_detail(api: Api) -> None:
    t0 = time.perf_counter()
    ds = upload_dataset(api, beir_fixture.files())
    assert ds["kind"] == "collection" and ds["source"] == f"eval:{ds['id']}"
    assert ds["query_count"] == 6 and ds["doc_count"] == 20
    weighted = {"name": "hybrid-w", "mode": "hybrid", "dense_weight": 0.5, "sparse_weight": 2.0}
    run = run_eval(api, ds["id"], configs=["sparse", "dense", "hybrid", weighted, "hybrid+rerank"], ks=[1, 3, 10])
    print(f"\nupload + ingest + eval of the tiny fixture: {time.perf_counter() - t0:.2f}s "
          f"(eval job itself {run['duration_s']:.2f}s)")
    assert run["status"] == "succeeded", run
    assert set(run["summary"]) == {"sparse", "dense", "hybrid", "hybrid-w", "hybrid+rerank"}
    hybrid = run["summary"]["hybrid"]
    for key in ("ndcg@10", "mrr@10", "recall@10", "precision@10", "hit_rate@10", "latency_p95_ms"):
        assert key in hybrid
    assert hybrid["queries"] == 6
    assert hybrid["hit_rate@10"] == 1.0

    rows = per_query(api, run["id"], "hybrid")
    assert rows["q1"]["ranked"][0] == "d01"  # ids come back in the dataset's own id space
    assert rows["q1"]["metrics"]["ndcg@10"] == 1.0
    assert rows["q3"]["relevant"] == {"d03": 2, "d04": 1}

    # the stored summary is exactly what the pure metric functions say about the stored rankings
    for config, summary in run["summary"].items():
        ranked = {qid: row["ranked"] for qid, row in per_query(api, run["id"], config).items()}
        expected = evaluate_run(ranked, beir_fixture.QRELS, ks=(1, 3, 10),
                                metrics=("ndcg", "mrr", "recall", "precision", "hit_rate"))
        for key, value in expected.items():
            assert summary[key] == pytest.approx(value), (config, key)

    job = api.job(run["id"])
    assert job["kind"] == "eval" and job["state"] == "succeeded" and job["progress"] == 1.0
    listed = api.client.get("/v1/evals", headers=api.headers, params={"dataset_id": ds["id"]}).json()
    assert [r["id"] for r in listed["data"]] == [run["id"]]
    # the collection is ordinary documents, tagged as evaluation material
    docs = api.client.get("/v1/documents", headers=api.headers, params={"limit": 100}).json()["data"]
    assert {d["source"] for d in docs} == {f"eval:{ds['id']}"} and len(docs) == 20


def test_evaluations_are_invisible_outside_the_dataset_acl_and_tenant(api: Api, make_container) -> None:  # type: ignore[no-untyped-def]
    ds = upload_dataset(api, beir_fixture.files())
    run = run_eval(api, ds["id"], configs=["sparse"], ks=[10])
    other_user = api.new_key("eve", role="editor")
    container = api.client.app.state.container  # type: ignore[attr-defined]
    _, key = container.keys.create("other-tenant", "admin", [], Role.admin)
    other_tenant = api.as_key(key)
    for outsider in (other_user, other_tenant):
        for path in (
            f"/v1/evals/{run['id']}",
            f"/v1/evals/{run['id']}/queries",
            f"/v1/evals/{run['id']}/compare/{run['id']}",
            f"/v1/eval-datasets/{ds['id']}",
        ):
            r = outsider.client.get(path, headers=outsider.headers)
            assert r.status_code == 404, (path, r.text)
        assert outsider.client.get("/v1/evals", headers=outsider.headers).json()["count"] == 0
        assert outsider.client.get("/v1/eval-datasets", headers=outsider.headers).json()["count"] == 0
        r = outsider.client.post("/v1/evals", headers=outsider.headers, json={"dataset_id": ds["id"]})
        assert r.status_code == 404
        assert outsider.search("chlorophyll photosynthesis") == []  # the collection is ACL'd too
    # sharing the dataset with a group shares its runs
    shared = upload_dataset_with_acl(api, "group:search")
    member = api.new_key("sam", groups=["search"])
    assert member.client.get(f"/v1/eval-datasets/{shared}", headers=member.headers).status_code == 200


def upload_dataset_with_acl(api: Api, acl: str) -> str:
    multipart = [("files", ("tiny.tar.gz", beir_fixture.tar_gz(), "application/gzip"))]
    r = api.client.post("/v1/eval-datasets", headers=api.headers, files=multipart,
                        data={"name": "shared", "acl": acl})
    assert r.status_code == 201, r.text
    assert r.json()["doc_count"] == 20 and r.json()["query_count"] == 6
    return str(r.json()["id"])


def test_baseline_flags_a_later_run_that_regresses_and_compare_shows_the_query(api: Api) -> None:
    ds = upload_dataset(api, beir_fixture.files())
    first = run_eval(api, ds["id"], configs=["hybrid"], ks=[10], regression_threshold=0.05)
    r = api.client.post(f"/v1/evals/{first['id']}/baseline", headers=api.headers)
    assert r.status_code == 200 and r.json()["is_baseline"] is True
    steady = run_eval(api, ds["id"], configs=["hybrid"], ks=[10], regression_threshold=0.05)
    assert steady["baseline_id"] == first["id"] and steady["regressed"] is False

    # the corpus loses the only document that answers q1: nDCG@10 drops by 1/6 > 0.05
    r = api.client.delete(f"/v1/documents/eval-{ds['id']}-d01", headers=api.headers)
    assert r.status_code == 204
    worse = run_eval(api, ds["id"], configs=["hybrid"], ks=[10], regression_threshold=0.05)
    assert worse["regressed"] is True
    flagged = {(x["config"], x["metric"]) for x in worse["regressions"]}
    assert ("hybrid", "ndcg@10") in flagged
    drop = next(x for x in worse["regressions"] if x["metric"] == "ndcg@10")
    assert drop["delta"] == pytest.approx(-1 / 6)

    cmp = api.client.get(f"/v1/evals/{first['id']}/compare/{worse['id']}", headers=api.headers).json()
    assert cmp["metric"] == "ndcg@10"
    assert cmp["configs"]["hybrid"]["ndcg@10"]["delta"] == pytest.approx(-1 / 6)
    assert [q["query_id"] for q in cmp["per_query"]["hybrid"]] == ["q1"]
    assert cmp["per_query"]["hybrid"][0] == {"query_id": "q1", "a": 1.0, "b": 0.0, "delta": -1.0}


def test_labelled_queries_attached_to_the_existing_corpus(api: Api) -> None:
    api.ingest("refunds.txt", "Customers may request a full refund within 30 days of purchase.",
               doc_id="refunds", acl=["tenant:*"])
    api.ingest("vpn.txt", "Install the WireGuard VPN client and import the configuration file.",
               doc_id="vpn", acl=["tenant:*"])
    body = {"name": "helpdesk", "queries": {"a": "how long do I have to get my money back", "b": "wireguard setup"},
            "qrels": {"a": {"refunds": 1}, "b": {"vpn": 1}}}
    r = api.client.post("/v1/eval-datasets/attached", headers=api.headers, json=body)
    assert r.status_code == 201, r.text
    run = run_eval(api, r.json()["id"], configs=["hybrid"], ks=[1, 10])
    assert run["status"] == "succeeded", run
    assert run["summary"]["hybrid"]["hit_rate@10"] == 1.0
    assert per_query(api, run["id"], "hybrid")["b"]["ranked"][0] == "vpn"


@pytest.mark.parametrize(
    ("files", "body", "code"),
    [
        ({"corpus.jsonl": b'{"_id": "x", "text": "t"}\n'}, None, "not_found"),  # missing queries / qrels
        ({"data.zip": b"not a zip"}, None, "invalid_input"),
        (None, {"configs": ["nope"]}, "invalid_input"),
        (None, {"configs": [{"name": "x", "fusion": "dbsf", "dense_weight": 2}]}, "invalid_input"),
        (None, {"ks": [0]}, "invalid_input"),
    ],
)
def test_bad_input_gets_clear_errors(api: Api, files, body, code: str) -> None:  # type: ignore[no-untyped-def]
    if files is not None:
        multipart = [("files", (n, d, "application/octet-stream")) for n, d in files.items()]
        r = api.client.post("/v1/eval-datasets", headers=api.headers, files=multipart, data={"name": "bad"})
        assert r.status_code == 422, r.text
    else:
        attached = api.client.post(
            "/v1/eval-datasets/attached", headers=api.headers,
            json={"name": "x", "queries": {"a": "q"}, "qrels": {"a": {"d": 1}}},
        ).json()
        r = api.client.post("/v1/evals", headers=api.headers, json={"dataset_id": attached["id"], **body})
        assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] in (code, "invalid_input")


def _set_job_age(container, job_id: str, hours: float) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from sqlalchemy import update

    from core.tables import Job, utcnow

    with container.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(hours=hours)))


def test_a_running_evaluation_is_not_run_twice(make_container) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import delete, func, select

    from core.tables import Job
    from core.tables_evals import EvalQueryResult, EvalRun

    container = make_container()
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        ds = upload_dataset(api, beir_fixture.files())
        run_id = run_eval(api, ds["id"], configs=["hybrid"], ks=[10])["id"]
        with container.sessions.begin() as s:  # as if another worker were running it right now
            s.get(EvalRun, run_id).status = "running"
            s.get(Job, run_id).state = "running"
            s.execute(delete(EvalQueryResult).where(EvalQueryResult.run_id == run_id))
        _set_job_age(container, run_id, 0)

        def state() -> tuple[str, int]:
            with container.sessions() as s:
                rows = s.scalar(select(func.count()).select_from(EvalQueryResult)
                                .where(EvalQueryResult.run_id == run_id))
                return s.get(EvalRun, run_id).status, int(rows or 0)

        container.eval_jobs.run(run_id)  # a redelivered or re-sent copy: refused
        assert state() == ("running", 0)
        _set_job_age(container, run_id, 1)  # silent past stale_after_s: taken over and finished
        container.eval_jobs.run(run_id)
        assert state()[0] == "succeeded" and state()[1] > 0


def test_waiting_for_documents_keeps_the_run_fresh(make_container, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC

    from app.services import eval_jobs
    from core.tables import Job, utcnow

    container = make_container()
    with container.sessions.begin() as s:
        s.add(Job(id="ev1", tenant_id="default", kind="eval", state="running"))
    _set_job_age(container, "ev1", 1)
    states = iter([{"queued": 3}, {"queued": 1}, {}])
    monkeypatch.setattr(eval_jobs, "_TOUCH_EVERY_S", 0.0)
    monkeypatch.setattr(container.eval_jobs._datasets, "document_states", lambda _ds: next(states))
    container.eval_jobs._wait_for_documents("ev1", None)
    with container.sessions() as s:
        updated = s.get(Job, "ev1").updated_at
    assert (utcnow() - (updated if updated.tzinfo else updated.replace(tzinfo=UTC))).total_seconds() < 60
