"""The same foundation flow against the real PostgreSQL server (database `test` on 127.0.0.1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.api import Api

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A schema of its own inside database `test`, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(PG)
    schema = f"cairn_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sqlalchemy.exc.OperationalError as exc:  # pragma: no cover - the machine's server is down
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable ({exc.__class__.__name__}); start it")
    yield f"{PG}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def test_foundation_flow_on_postgres(make_container, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    container = make_container(database_url=pg_url)
    assert container.engine.dialect.name == "postgresql"
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        support = api.new_key("alice", ["support"])
        doc = api.ingest("refunds.txt", "Refunds are possible within 30 days of purchase.", acl=["group:support"])
        assert support.search("refund within 30 days")[0]["doc_id"] == doc["document_id"]
        assert api.new_key("oscar").search("refund within 30 days") == []
        listed = support.client.get("/v1/documents", headers=support.headers).json()
        assert listed["count"] == 1
        v2 = api.ingest("refunds.txt", "Refunds are possible within 60 days.", doc_id=doc["document_id"],
                        acl=["group:support"])
        assert v2["version"] == 2
        assert api.client.delete(f"/v1/documents/{doc['document_id']}", headers=api.headers).status_code == 204
        assert support.search("refund") == []


def test_answer_runs_are_durable_on_postgres(make_container, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    """Workflow runs and their event log on PostgreSQL (JSON columns, timestamps, review)."""
    container = make_container(database_url=pg_url)
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        api.ingest("refunds.txt", "Customers may request a full refund within 30 days of purchase.", acl=["tenant:*"])
        body = api.answer("How many days do customers have to request a refund?")
        assert not body["abstained"] and "30 days" in body["answer"]
        run = api.run(body["run_id"])
        assert [s["status"] for s in run["steps"]] == ["completed"] * 3
        paused = api.answer("Is there a dress code for the office?", workflow="support_assistant")
        assert paused["status"] == "awaiting_review"
        r = client.post(f"/v1/runs/{paused['run_id']}/review", headers=api.headers, json={"action": "reject"})
        assert r.status_code == 200 and r.json()["status"] == "rejected"
