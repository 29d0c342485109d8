"""SQL connector against the real PostgreSQL server: a tickets table in a throwaway schema,
an updated_at cursor, an ACL column whose changes move who can find a ticket, deleted rows
leaving search, and a 1,000-row sync end to end (Cairn's own database on PostgreSQL too)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app import connector_api as conn
from tests.app.api import Api

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of its own inside database `test` (Cairn's tables and the tickets), dropped after."""
    engine = sa.create_engine(PG)
    name = f"cairn_conn_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {name}")
            c.exec_driver_sql(
                f"CREATE TABLE {name}.tickets (id integer primary key, subject text, body text, status text, "
                "priority text, acl text, updated_at timestamptz not null default now())"
            )
    except sa.exc.OperationalError as exc:  # pragma: no cover - the machine's server is down
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable ({exc.__class__.__name__}); start it")
    yield name
    with engine.begin() as c:
        c.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
    engine.dispose()


def _sql(statement: str, **params: Any) -> None:
    engine = sa.create_engine(PG)
    with engine.begin() as c:
        c.execute(sa.text(statement), params)
    engine.dispose()


def _client(make_container, schema: str) -> TestClient:  # type: ignore[no-untyped-def]
    container = make_container(
        database_url=f"{PG}?options=-csearch_path%3D{schema}",
        connectors={"allowed_hosts": ["127.0.0.1"], "scheduler": False},
    )
    return TestClient(create_app(container=container))


def _config(schema: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": "postgresql+psycopg://postgres:hunter2@127.0.0.1:5432/test", "table": f"{schema}.tickets",
        "title_template": "Ticket {id}: {subject}", "text_template": "{subject}\n\n{body}",
        "metadata_columns": ["status", "priority"], "acl_column": "acl", **extra,
    }


def test_cursor_acl_changes_and_deleted_rows(make_container, schema: str) -> None:  # type: ignore[no-untyped-def]
    t = f"{schema}.tickets"
    _sql(f"INSERT INTO {t} (id, subject, body, status, priority, acl, updated_at) VALUES "
         "(1, 'Refund not received', 'The customer paid twice and wants the duplicate charge refunded.', "
         "'open', 'high', 'support', now() - interval '3 hours'),"
         "(2, 'Enterprise quote', 'Prospect asks for volume pricing on 500 seats.', 'open', 'low', 'sales', "
         "now() - interval '2 hours'),"
         "(3, 'Password reset loop', 'The reset email link expires before the user clicks it.', 'closed', 'mid', "
         "'support, user:bob', now() - interval '1 hour'),"
         "(4, '', NULL, 'open', 'low', 'support', now() - interval '4 hours')")
    with _client(make_container, schema) as client:
        admin = Api(client)
        editor = admin.new_key("erin", role="editor")
        support, sales = admin.new_key("sue", ["support"]), admin.new_key("sal", ["sales"])
        bad = editor.client.post("/v1/connectors", headers=editor.headers, json={
            "name": "bad", "kind": "sql", "config": _config(schema, table=None, query=f"DELETE FROM {t}")})
        assert bad.status_code == 422 and "single SELECT" in bad.json()["error"]["message"]
        sneaky = editor.client.post("/v1/connectors", headers=editor.headers, json={
            "name": "bad", "kind": "sql", "config": _config(schema, text_template="{body.__class__}")})
        assert sneaky.status_code == 422
        far = editor.client.post("/v1/connectors", headers=editor.headers, json={
            "name": "bad", "kind": "sql", "config": _config(schema, url="postgresql+psycopg://db.example.com/x")})
        assert far.status_code == 422 and "CAIRN_CONNECTORS__ALLOWED_HOSTS" in far.json()["error"]["message"]

        r = editor.client.post("/v1/connectors", headers=editor.headers,
                               json={"name": "tickets", "kind": "sql", "config": _config(schema)})
        assert r.status_code == 201 and "hunter2" not in r.text
        created = r.json()
        assert created["config"]["url"] == "postgresql+psycopg://postgres:***@127.0.0.1:5432/test"

        first = conn.sync(editor, created["id"])["last_sync"]
        assert (first["status"], first["seen"], first["indexed"], first["failed"]) == ("partial", 4, 3, 1)
        assert first["errors"] == [{"external_id": "4", "reason": "text_template rendered an empty text for this row"}]
        assert "Ticket 1: Refund not received" in conn.titles(support.search("duplicate charge refund"))
        assert "Ticket 1: Refund not received" not in conn.titles(sales.search("duplicate charge refund"))
        assert "Ticket 2: Enterprise quote" in conn.titles(sales.search("volume pricing seats"))
        bob = admin.new_key("bob")
        assert "Ticket 3: Password reset loop" in conn.titles(bob.search("reset email link expires"))

        _sql(f"UPDATE {t} SET acl = 'sales', updated_at = now() WHERE id = 1")
        _sql(f"DELETE FROM {t} WHERE id = 2")
        second = conn.sync(editor, created["id"])["last_sync"]
        assert (second["indexed"], second["deleted"]) == (1, 1)
        # the cursor: only the changed row, plus the row at the cursor itself (skipped as unchanged)
        assert (second["seen"], second["unchanged"]) == (2, 1)
        assert "Ticket 1: Refund not received" not in conn.titles(support.search("duplicate charge refund"))
        assert "Ticket 1: Refund not received" in conn.titles(sales.search("duplicate charge refund"))
        assert "Ticket 2: Enterprise quote" not in conn.titles(sales.search("volume pricing seats"))
        hit = sales.search("duplicate charge refund")[0]
        doc = sales.client.get(f"/v1/documents/{hit['doc_id']}", headers=sales.headers).json()
        assert doc["source"] == "tickets" and "group:sales" in doc["acl"] and "group:support" not in doc["acl"]

        report = conn.reconcile(editor, created["id"])
        assert (report["source_count"], report["indexed_count"]) == (3, 2)
        assert report["missing"] == [{"external_id": "4", "reason": "failed",
                                      "detail": "text_template rendered an empty text for this row"}]


@pytest.mark.slow
def test_a_thousand_row_sync_end_to_end(make_container, schema: str) -> None:  # type: ignore[no-untyped-def]
    _sql(f"INSERT INTO {schema}.tickets (id, subject, body, status, priority, acl, updated_at) "
         "SELECT i, 'Ticket ' || i, 'Order ' || i || ' arrived damaged; the customer wants a replacement.', "
         "CASE WHEN i % 3 = 0 THEN 'closed' ELSE 'open' END, 'low', "
         "CASE WHEN i % 2 = 0 THEN 'support' ELSE 'billing' END, now() - (i || ' seconds')::interval "
         "FROM generate_series(1, 1000) AS i")
    with _client(make_container, schema) as client:
        admin = Api(client)
        created = conn.create(admin, "tickets", "sql", _config(schema))
        started = time.perf_counter()
        done = conn.sync(admin, created["id"], timeout=600)
        seconds = time.perf_counter() - started
        print(f"\n1,000-row SQL sync (PostgreSQL source and metadata): {seconds:.1f} s")
        last = done["last_sync"]
        assert (last["status"], last["seen"], last["indexed"], last["failed"]) == ("succeeded", 1000, 1000, 0)
        assert done["items"] == {"total": 1000, "indexed": 1000, "pending": 0, "failed": 0}
        report = conn.reconcile(admin, created["id"])
        assert report["in_sync"] and report["source_count"] == report["indexed_count"] == 1000
        assert admin.new_key("bea", ["billing"]).search("order 777 arrived damaged", top_k=3)[0]["title"] == (
            "Ticket 777: Ticket 777")
        again = conn.sync(admin, created["id"])["last_sync"]  # cursor: nothing new
        assert (again["indexed"], again["deleted"], again["failed"]) == (0, 0, 0) and again["seen"] <= 1
