"""`POST /v1/search` as a user sees it: gatherers, explain, partial results, 422s, ACLs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.api import Api

pytestmark = pytest.mark.integration

MANUAL = "Router manual. Reset the router by holding the button for ten seconds, then update the firmware."
POLICY = "Refund policy. Customers may request a full refund within 30 days of purchase."
SALES = "Router pricing for the sales team only: partners get a forty percent discount on routers."


@pytest.fixture
def api(make_container):  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        yield Api(client)


def post(api: Api, **body: object):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/search", headers=api.headers, json=body)


def test_search_with_gatherers_explain_and_context(api: Api) -> None:
    api.ingest("manual.txt", MANUAL, acl=["tenant:*"], tags=["product_docs"])
    api.ingest("policy.txt", POLICY, acl=["tenant:*"], tags=["policy"])
    r = post(
        api,
        query="how do I reset the router?",
        gatherers=["product_docs", "policies"],
        explain=True,
        context_tokens=200,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    top = body["results"][0]
    assert top["title"] == "manual.txt" and top["gatherer"] == "product_docs"
    assert MANUAL[top["char_start"] : top["char_end"]] == top["text"]
    assert body["gatherer_errors"] == []
    assert body["explain"]["timings_ms"]["total_ms"] > 0
    first = body["explain"]["results"][0]
    assert first["gatherers"][0]["gatherer"] == "product_docs" and "rerank" in first["scores"]
    assert body["context"]["citations"][0]["chunk_id"] == top["chunk_id"]
    assert body["context"]["text"].startswith("[1] manual.txt") and body["context"]["tokens"] <= 200
    assert len(post(api, query="router").json()["results"]) <= 5  # default top_k


def test_unknown_gatherer_and_missing_param_are_422_with_a_code(api: Api) -> None:
    r = post(api, query="router", gatherers=["nope"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_gatherer"
    r = post(api, query="router", gatherers=["customer_history"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "missing_gatherer_param"
    names = {g["name"] for g in api.client.get("/v1/gatherers", headers=api.headers).json()["data"]}
    assert {"all", "product_docs", "policies", "customer_history", "similar_tickets"} <= names


def test_no_gatherer_leaks_another_groups_chunk(api: Api) -> None:
    editor = api.new_key("erin", ["sales", "support"], role="editor")
    editor.ingest("sales.txt", SALES, acl=["group:sales"], tags=["product_docs", "policy"])
    support = api.new_key("sam", ["support"])
    for gatherers in (None, ["all"], ["product_docs"], ["policies"], ["product_docs", "policies", "all"]):
        for filters in (None, {"tags": ["product_docs"]}):
            r = post(
                support, query="router pricing discount", gatherers=gatherers, filters=filters, explain=True
            )
            assert r.status_code == 200 and r.json()["results"] == [], (gatherers, filters)
    sales = api.new_key("sue", ["sales"])
    assert post(sales, query="router pricing discount", gatherers=["product_docs"]).json()["results"]
