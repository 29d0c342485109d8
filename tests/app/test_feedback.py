"""Answer feedback end to end: who may judge which run, corrected citations checked against the
judge's own access, one feedback per judge and run, summaries, the Prometheus counter, and
feedback turned into a labelled dataset that an evaluation job then scores."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from core.models import Role
from tests.app.api import Api

pytestmark = pytest.mark.integration

REFUND = ("Refund policy. Customers may request a full refund within 30 days of purchase. "
          "Refunds are issued to the original payment method within five business days.")
VPN = ("VPN setup guide. Install the WireGuard client, import the configuration file from the "
       "IT portal, and connect before opening the internal wiki.")
NETWORK = ("Remote access. Staff working from home reach internal systems through the secure tunnel "
           "described in the network handbook; the helpdesk issues the access profile.")
SALARIES = ("Salary bands 2026. The engineering salary band for level three ranges from 80,000 to 95,000 "
            "euros. Annual bonuses are paid every March after the performance review.")


@pytest.fixture
def api(make_container) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(container=make_container())) as client:
        admin = Api(client)
        editor = admin.new_key("erin", role="editor")  # carol's private document: the admin may not read it
        docs = [(admin, "refunds", REFUND, "tenant:*"), (admin, "vpn", VPN, "tenant:*"),
                (admin, "network", NETWORK, "tenant:*"), (editor, "salaries", SALARIES, "user:carol")]
        jobs = []
        for who, doc_id, text, acl in docs:
            r = who.upload(f"{doc_id}.txt", text.encode(), {"title": doc_id, "doc_id": doc_id, "acl": [acl]})
            assert r.status_code == 202, r.text
            jobs.append(r.json()["job_id"])
        assert all(admin.wait(j)["state"] == "indexed" for j in jobs)
        yield admin


def feedback(caller: Api, run_id: str, **body: Any):  # type: ignore[no-untyped-def]
    return caller.client.post(f"/v1/answers/{run_id}/feedback", headers=caller.headers, json=body)


def counter(caller: Api, workflow: str, rating: str) -> float:
    text = caller.client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "cairn_answer_feedback_total" and s.labels == {"workflow": workflow, "rating": rating}:
                return float(s.value)
    return 0.0


def chunk_of(caller: Api, doc_id: str, query: str) -> dict[str, Any]:
    return next(h for h in caller.search(query, top_k=10) if h["doc_id"] == doc_id)


def test_feedback_is_for_who_may_see_the_run_once_per_judge(api: Api) -> None:
    alice, bob = api.new_key("alice"), api.new_key("bob")
    answer = alice.answer("How many days do customers have to request a refund?")
    assert not answer["abstained"]
    run_id = answer["run_id"]
    before = counter(api, "grounded_qa", "up")

    r = feedback(alice, run_id, rating="up", reason=None, corrected_citation=None)
    assert r.status_code == 201, r.text
    first = r.json()
    assert {"feedback_id", "run_id", "rating"} <= first.keys()
    assert first["run_id"] == run_id and first["rating"] == "up" and first["replaced"] is False
    assert first["cited_doc_ids"] == ["refunds"] and first["workflow"] == "grounded_qa"
    assert counter(api, "grounded_qa", "up") == before + 1

    # what the UI sends: {"rating", "reason"}; a second feedback replaces the first
    r = feedback(alice, run_id, rating="down", reason="  Too short ")
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["feedback_id"] == first["feedback_id"] and second["replaced"] is True
    assert second["rating"] == "down" and second["reason"] == "Too short"
    own = alice.client.get("/v1/feedback/summary", headers=alice.headers).json()
    assert own["scope"] == "own" and own["total"] == {"up": 0, "down": 1, "count": 1, "acceptance_rate": 0.0}

    # another user of the tenant and another tenant cannot see the run, so cannot judge it
    assert feedback(bob, run_id, rating="up").status_code == 404
    _, key = api.client.app.state.container.keys.create("other-tenant", "admin", [], Role.admin)  # type: ignore[attr-defined]
    outsider = api.as_key(key)
    r = feedback(outsider, run_id, rating="up")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert feedback(alice, "no-such-run", rating="up").status_code == 404
    # a tenant admin may (GET /v1/runs/{id} rule), and it is a feedback of its own
    r = feedback(api, run_id, rating="up", reason="fine")
    assert r.status_code == 201 and r.json()["feedback_id"] != first["feedback_id"]

    for bad in ({"rating": "meh"}, {}, {"rating": "up", "extra": 1}, {"rating": "up", "reason": "x" * 2001}):
        r = feedback(alice, run_id, **bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", bad

    # every feedback, refused ones included, is in the audit trail
    r = api.client.get("/v1/audit/export", headers=api.headers, params={"action": "answer.feedback"})
    logged = [json.loads(line) for line in r.text.splitlines()]
    assert [(e["principal"], e["details"].get("rating"), e["outcome"]) for e in logged[:3]] == [
        ("alice", "up", "ok"), ("alice", "down", "ok"), ("bob", "up", "not_found"),
    ]
    assert {e["targets"]["run_id"] for e in logged[:3]} == {run_id}


def test_corrected_citation_must_point_at_what_the_judge_may_read(api: Api) -> None:
    alice = api.new_key("alice")
    carol = api.new_key("carol")
    run_id = alice.answer("How do I set up the VPN?")["run_id"]
    network = chunk_of(alice, "network", "secure tunnel for staff working from home")
    refunds = chunk_of(alice, "refunds", "refund within 30 days")

    # a document the judge cannot read is a 404, exactly like one that does not exist
    for doc_id in ("salaries", "nope"):
        r = feedback(alice, run_id, rating="down", corrected_citation={"doc_id": doc_id})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", doc_id
    cases = [
        {"doc_id": "network", "chunk_id": refunds["chunk_id"]},  # a chunk of another document
        {"doc_id": "network", "chunk_id": "not-a-uuid"},
        {"doc_id": "network", "quote": "this sentence is nowhere"},
        {"doc_id": "network", "chunk_id": network["chunk_id"], "quote": "Refunds are issued"},
    ]
    for corrected in cases:
        r = feedback(alice, run_id, rating="down", corrected_citation=corrected)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_citation", corrected

    good = {"doc_id": "network", "chunk_id": network["chunk_id"], "quote": "secure  tunnel described in"}
    r = feedback(alice, run_id, rating="down", reason="wrong source", corrected_citation=good)
    assert r.status_code == 201, r.text
    assert r.json()["corrected_citation"] == good and r.json()["cited_doc_ids"] == ["vpn"]

    # carol may read her own document, and may correct her own answers with it
    carol_run = carol.answer("What is the engineering salary band for level three?")["run_id"]
    r = feedback(carol, carol_run, rating="down", corrected_citation={"doc_id": "salaries", "quote": "80,000"})
    assert r.status_code == 201, r.text


def test_summary_counts_rates_and_reasons_per_workflow(api: Api) -> None:
    alice, bob = api.new_key("alice"), api.new_key("bob")
    runs = {
        (alice, "up", None): "How many days do customers have to request a refund?",
        (alice, "down", "Outdated"): "How do I set up the VPN?",
        (bob, "down", "outdated "): "When are refunds issued?",
        (bob, "down", "missing steps"): "Which client does the VPN need?",
    }
    for (who, rating, reason), question in runs.items():
        run_id = who.answer(question)["run_id"]
        assert feedback(who, run_id, rating=rating, reason=reason).status_code == 201
    support = alice.answer("How do I set up the VPN?", workflow="support_assistant")
    assert feedback(alice, support["run_id"], rating="up").status_code == 201

    r = api.client.get("/v1/feedback/summary", headers=api.headers)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["scope"] == "tenant" and s["tenant_id"] == "default"
    assert s["total"] == {"up": 2, "down": 3, "count": 5, "acceptance_rate": 0.4}
    by = {w["workflow"]: w for w in s["workflows"]}
    assert by["grounded_qa"]["up"] == 1 and by["grounded_qa"]["down"] == 3
    assert by["grounded_qa"]["acceptance_rate"] == 0.25
    assert by["support_assistant"]["acceptance_rate"] == 1.0 and by["support_assistant"]["top_reasons"] == []
    assert s["top_reasons"] == [{"reason": "outdated", "count": 2}, {"reason": "missing steps", "count": 1}]

    only = api.client.get("/v1/feedback/summary", headers=api.headers, params={"workflow": "support_assistant"})
    assert only.json()["total"]["count"] == 1 and [w["workflow"] for w in only.json()["workflows"]] == [
        "support_assistant"
    ]
    mine = bob.client.get("/v1/feedback/summary", headers=bob.headers).json()
    assert mine["scope"] == "own" and mine["total"]["down"] == 2 and mine["total"]["up"] == 0
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    empty = api.client.get("/v1/feedback/summary", headers=api.headers, params={"since": later}).json()
    assert empty["total"] == {"up": 0, "down": 0, "count": 0, "acceptance_rate": None}
    earlier = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    assert api.client.get("/v1/feedback/summary", headers=api.headers,
                          params={"since": earlier}).json()["total"]["count"] == 5


def test_feedback_becomes_labels_an_evaluation_job_scores(api: Api) -> None:
    alice, carol = api.new_key("alice", role="editor"), api.new_key("carol")
    refund_q = "How many days do customers have to request a refund?"
    vpn_q = "How do I set up the VPN?"
    up = alice.answer(refund_q)["run_id"]
    assert feedback(alice, up, rating="up").status_code == 201
    down = alice.answer(vpn_q)["run_id"]
    network = {"doc_id": "network"}
    assert feedback(alice, down, rating="down", corrected_citation=network).status_code == 201
    bare_down = alice.answer("Which client does the VPN need?")["run_id"]
    assert feedback(alice, bare_down, rating="down", reason="no").status_code == 201  # no relevant doc: skipped
    # carol's correction names her private document: an admin's dataset leaves that label out
    carol_run = carol.answer("What is the engineering salary band for level three?")["run_id"]
    assert feedback(carol, carol_run, rating="down", corrected_citation={"doc_id": "salaries"}).status_code == 201

    r = alice.client.post("/v1/eval-datasets/from-feedback", headers=alice.headers, json={"name": "from thumbs"})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["kind"] == "attached" and ds["query_count"] == 2
    assert ds["feedback_used"] == 3 and ds["queries_skipped"] == 1

    r = alice.client.post("/v1/evals", headers=alice.headers,
                          json={"dataset_id": ds["id"], "configs": ["hybrid"], "ks": [1, 10]})
    assert r.status_code == 202, r.text
    run = wait_eval(alice, r.json()["id"])
    assert run["status"] == "succeeded", run
    rows = alice.client.get(f"/v1/evals/{run['id']}/queries", headers=alice.headers).json()["data"]
    labels = {row["query"]: row["relevant"] for row in rows}
    assert labels == {refund_q: {"refunds": 1}, vpn_q: {"network": 2, "vpn": 0}}
    assert run["summary"]["hybrid"]["queries"] == 2.0
    assert {row["query_id"] for row in rows} == {up, down}

    admin_ds = api.client.post("/v1/eval-datasets/from-feedback", headers=api.headers, json={"name": "all"}).json()
    assert admin_ds["query_count"] == 2 and admin_ds["queries_skipped"] == 2  # bare thumbs-down + carol's
    dave = api.new_key("dave")
    r = dave.client.post("/v1/eval-datasets/from-feedback", headers=dave.headers, json={"name": "none"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_feedback_labels"


def wait_eval(caller: Api, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = caller.client.get(f"/v1/evals/{run_id}", headers=caller.headers).json()
        if run["status"] in ("succeeded", "failed"):
            return run  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"evaluation {run_id} did not finish")
