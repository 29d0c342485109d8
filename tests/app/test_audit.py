"""The audit trail: what is recorded for each action, the hash chain and its tamper checks
(HTTP and `cairn audit verify`), the JSONL export, and concurrent writers - on SQLite and on the
real PostgreSQL server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import make_engine, make_session_factory
from app.main import create_app
from app.services.audit import AuditLog
from core.models import Principal, Role
from tests.app.api import Api
from tests.app.test_postgres import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
REFUND = "Customers may request a full refund within 30 days of purchase."


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:  # type: ignore[no-untyped-def]
    """None: the embedded default (SQLite); else a private PostgreSQL schema."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def setup(make_container, database: str | None) -> Iterator[tuple[Api, Any]]:  # type: ignore[no-untyped-def]
    container = make_container(database_url=database) if database else make_container()
    with TestClient(create_app(container=container)) as client:
        yield Api(client), container


def export(api: Api, **params: Any) -> list[dict[str, Any]]:
    r = api.client.get("/v1/audit/export", headers=api.headers, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


def verify(api: Api) -> dict[str, Any]:
    r = api.client.get("/v1/audit/verify", headers=api.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def sql(container: Any, statement: str, **params: Any) -> None:
    with container.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_actions_are_recorded_with_documents_models_and_outcomes(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    doc = api.ingest("refunds.txt", REFUND, acl=["tenant:*"])
    hits = api.search("refund within 30 days")
    answer = api.answer("How many days do customers have to request a refund?")
    reader = api.new_key("rita")
    assert reader.upload("x.txt", b"not allowed", {"title": "x"}).status_code == 403
    assert api.client.delete("/v1/documents/missing", headers=api.headers).status_code == 404
    assert api.client.delete(f"/v1/documents/{doc['document_id']}", headers=api.headers).status_code == 204

    events = export(api)
    actions = [(e["action"], e["outcome"]) for e in events]
    assert actions == [
        ("document.upload", "ok"), ("search", "ok"), ("answer", "ok"), ("key.create", "ok"),
        ("document.upload", "denied"), ("document.delete", "not_found"), ("document.delete", "ok"),
        ("audit.export", "ok"),  # the export is audited too, before its lines are read
    ]
    upload, search, ans, key, denied, _missing, deleted, _export = events
    assert upload["targets"] == {"document_id": doc["document_id"], "version": 1, "job_id": doc["job_id"]}
    assert upload["principal"] == "admin" and upload["role"] == "admin" and upload["key_id"]
    assert search["retrieved"] == [{"doc_id": h["doc_id"], "chunk_id": h["chunk_id"]} for h in hits]
    assert ans["targets"]["run_id"] == answer["run_id"]
    assert ans["cited"] == [{"doc_id": c["doc_id"], "chunk_id": c["chunk_id"]} for c in answer["citations"]]
    assert ans["cited"] and {c["chunk_id"] for c in ans["cited"]} <= {r["chunk_id"] for r in ans["retrieved"]}
    assert ans["models"] == [f"{answer['provider']}:{answer['model']}"]
    assert key["details"]["user"] == "rita" and key["targets"]["key_id"]
    assert denied["principal"] == "rita" and denied["role"] == "reader"
    assert deleted["targets"] == {"document_id": doc["document_id"]}
    assert [e["seq"] for e in events] == list(range(1, 9))
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:], strict=False))
    assert verify(api) == {"tenant_id": "default", "ok": True, "events": 8, "head_hash": events[-1]["hash"],
                           "broken_seq": None, "broken_id": None, "reason": None}


def test_streamed_answers_and_admin_actions_are_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    api.ingest("refunds.txt", REFUND, acl=["tenant:*"])
    events = api.answer_events("How many days do customers have to request a refund?", stream=True)
    final = events[-1][1]
    key = api.client.post("/v1/keys", headers=api.headers, json={"user": "kim"}).json()
    api.client.post(f"/v1/keys/{key['key_id']}/rotate", headers=api.headers, json={"grace_s": 5})
    api.client.patch(f"/v1/keys/{key['key_id']}", headers=api.headers, json={"role": "editor"})
    api.client.delete(f"/v1/keys/{key['key_id']}", headers=api.headers)
    reader = api.new_key("rex")
    assert reader.client.delete(f"/v1/keys/{key['key_id']}", headers=reader.headers).status_code == 403

    logged = export(api, action=["answer", "key.rotate", "key.update", "key.revoke"])
    assert [(e["action"], e["outcome"]) for e in logged] == [
        ("answer", "ok"), ("key.rotate", "ok"), ("key.update", "ok"), ("key.revoke", "ok"), ("key.revoke", "denied"),
    ]
    streamed = logged[0]
    assert streamed["targets"]["run_id"] == final["run_id"]
    assert streamed["cited"] == [{"doc_id": c["doc_id"], "chunk_id": c["chunk_id"]} for c in final["citations"]]
    assert logged[1]["details"] == {"grace_s": 5} and logged[2]["details"] == {"role": "editor"}
    assert {e["targets"]["key_id"] for e in logged[1:]} == {key["key_id"]}
    assert logged[4]["principal"] == "rex"


def test_export_filters_and_is_admin_only_and_per_tenant(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    api.ingest("refunds.txt", REFUND, acl=["tenant:*"])
    api.search("refund")
    api.search("purchase")
    assert [e["action"] for e in export(api, action="search")] == ["search", "search"]
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert export(api, since=future) == []
    assert len(export(api, until=future, action=["search", "document.upload"])) == 3
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert len(export(api, since=past, action="search")) == 2

    reader = api.new_key("rita")
    assert reader.client.get("/v1/audit/export", headers=reader.headers).status_code == 403
    assert reader.client.get("/v1/audit/verify", headers=reader.headers).status_code == 403
    _, other = container.keys.create("tenant-b", "bob", [], Role.admin)
    b = api.as_key(other)
    b.search("refund")
    theirs = export(b)
    assert [e["action"] for e in theirs] == ["search", "audit.export"] and theirs[0]["tenant_id"] == "tenant-b"
    assert theirs[0]["seq"] == 1 and theirs[0]["prev_hash"] == "0" * 64  # a chain of its own
    assert all(e["tenant_id"] == "default" for e in export(api))


def test_an_edited_event_is_reported(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    for q in ("refund", "invoice", "shipping", "returns"):
        api.search(q)
    assert verify(api)["ok"]
    sql(container, "UPDATE audit_events SET principal = 'mallory' WHERE tenant_id = 'default' AND seq = 3")
    result = verify(api)
    assert not result["ok"] and result["broken_seq"] == 3 and "edited" in result["reason"]
    assert result["broken_id"] == export(api)[2]["id"]


def test_deleted_or_reordered_events_are_reported(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    for q in ("refund", "invoice", "shipping", "returns", "warranty"):
        api.search(q)
    sql(container, "DELETE FROM audit_events WHERE tenant_id = 'default' AND seq = 2")
    result = verify(api)
    assert not result["ok"] and result["broken_seq"] == 3 and "deleted" in result["reason"]


def test_swapped_events_and_a_cut_tail_are_reported(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    for q in ("refund", "invoice", "shipping"):
        api.search(q)
    sql(container, "UPDATE audit_events SET seq = -1 WHERE tenant_id = 'default' AND seq = 1")
    sql(container, "UPDATE audit_events SET seq = 1 WHERE tenant_id = 'default' AND seq = 2")
    sql(container, "UPDATE audit_events SET seq = 2 WHERE tenant_id = 'default' AND seq = -1")
    assert verify(api)["broken_seq"] == 1
    sql(container, "UPDATE audit_events SET seq = -1 WHERE tenant_id = 'default' AND seq = 2")
    sql(container, "UPDATE audit_events SET seq = 2 WHERE tenant_id = 'default' AND seq = 1")
    sql(container, "UPDATE audit_events SET seq = 1 WHERE tenant_id = 'default' AND seq = -1")
    assert verify(api)["ok"]  # swapped back
    sql(container, "DELETE FROM audit_events WHERE tenant_id = 'default' AND seq >= 3")
    result = verify(api)
    assert not result["ok"] and result["broken_seq"] == 3 and "newest events were deleted" in result["reason"]


def test_concurrent_writers_never_fork_the_chain(make_container, database: str | None, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two independent AuditLogs with engines of their own (like two API replicas; on SQLite
    like two threads of one process) append to one tenant at the same time."""
    container = make_container(database_url=database) if database else make_container()
    url = container.settings.sql_url
    engines = [make_engine(url) for _ in range(2)]
    logs = [AuditLog(make_session_factory(e)) for e in engines] if database else [container.audit] * 2
    who = Principal(tenant_id="default", user="load", role=Role.reader, key_id="k1")
    errors: list[BaseException] = []

    def write(log: AuditLog, n: int) -> None:
        try:
            for i in range(25):
                log.record(who, "search", targets={"n": n, "i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(logs[n % 2], n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert errors == []
    result = container.audit.verify("default")
    assert result.ok and result.events == 200
    seqs = [e.seq for e in container.audit.events("default")]
    assert seqs == list(range(1, 201))


def test_cli_verify_reads_the_database_and_names_the_broken_event(make_container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "var"
    container = make_container(data)
    who = Principal(tenant_id="default", user="alice", role=Role.reader, key_id="k1")
    for i in range(3):
        container.audit.record(who, "search", retrieved=[{"doc_id": "d", "chunk_id": str(i)}])
    container.audit.record(who.model_copy(update={"tenant_id": "acme"}), "search")
    env = {**os.environ, "CAIRN_DATA_DIR": str(data)}

    def cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli", "audit", "verify"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    ok = cli()
    assert ok.returncode == 0, ok.stderr
    assert "OK      tenant default: 3 events" in ok.stdout and "OK      tenant acme: 1 events" in ok.stdout
    sql(container, "UPDATE audit_events SET retrieved = :r WHERE tenant_id = 'default' AND seq = 2",
        r=json.dumps([{"doc_id": "d", "chunk_id": "forged"}]))
    broken = cli()
    assert broken.returncode == 1
    assert "BROKEN  tenant default: event 2" in broken.stdout and "edited" in broken.stdout
    assert "OK      tenant acme" in broken.stdout


def test_chat_completions_and_downloads_are_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    doc = api.ingest("refunds.txt", REFUND, acl=["tenant:*"])
    body = {"model": "grounded_qa", "messages": [{"role": "user", "content": "How many days for a refund?"}]}
    r = api.client.post("/v1/chat/completions", headers=api.headers, json=body)
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert api.client.get(f"/v1/documents/{doc['document_id']}/download", headers=api.headers).status_code == 200

    chat, download = export(api, action=["answer", "document.download"])
    assert chat["action"] == "answer" and chat["outcome"] == "ok"
    assert chat["details"]["api"] == "chat.completions" and chat["details"]["workflow"] == "grounded_qa"
    assert chat["cited"] == [{"doc_id": c["doc_id"], "chunk_id": c["chunk_id"]} for c in message["citations"]]
    assert chat["cited"] and chat["retrieved"]
    assert download["action"] == "document.download" and download["targets"]["document_id"] == doc["document_id"]


def test_governance_actions_are_recorded_and_a_subject_only_as_its_keyed_hash(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    subject = "alice@example.com"
    api.ingest("a.txt", f"Complaint. {subject} asked for a refund.", acl=["tenant:*"])
    second = api.ingest("b.txt", "Escalations go to the duty manager.", acl=["tenant:*"])
    r = api.client.put("/v1/admin/pii-policy", headers=api.headers, json={"policy": {"email": "tokenize"}})
    assert r.status_code == 200, r.text
    assert api.client.post("/v1/admin/purge", headers=api.headers).status_code == 200
    r = api.client.post("/v1/admin/erasure", headers=api.headers, json={"subject": subject.upper()})
    assert r.status_code == 200 and len(r.json()["erased"]) == 1
    erased = r.json()["erased"][0]["doc_id"]
    r = api.client.delete(f"/v1/documents/{second['document_id']}?erase=true", headers=api.headers)
    assert r.status_code == 204
    r = api.client.post("/v1/keys", headers=api.headers, json={"user": "priya", "permissions": ["pii:read"]})
    assert r.status_code == 201

    logged = export(api, action=["pii_policy.update", "retention.purge", "erasure", "key.create"])
    assert [(e["action"], e["outcome"]) for e in logged] == [
        ("pii_policy.update", "ok"), ("retention.purge", "ok"), ("erasure", "ok"), ("erasure", "ok"),
        ("key.create", "ok"),
    ]
    policy, purge, by_subject, by_delete, key = logged
    assert policy["details"] == {"policy": ["email:tokenize"]}
    assert purge["targets"] == {"doc_ids": []} and purge["details"]["cutoff"]
    assert subject not in json.dumps(logged).lower()  # the value itself is never recorded
    assert by_subject["details"]["subject_hmac"] == container.pii_vault.keys.mac("default", subject)
    assert by_subject["targets"] == {"doc_ids": [erased]} and by_subject["details"]["dry_run"] is False
    assert by_delete["targets"] == {"document_id": second["document_id"], "doc_ids": [second["document_id"]]}
    assert key["details"]["permissions"] == ["pii:read"]


def test_operator_and_tuning_routes_record_denied_requests(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    r = api.client.post("/v1/admin/tenants", headers=api.headers, json={"tenant_id": "acme"})
    assert r.status_code == 201, r.text
    acme = api.as_key(r.json()["key"])  # an admin, but not of the operator's tenant
    assert acme.client.post("/v1/admin/tenants", headers=acme.headers, json={"tenant_id": "evil"}).status_code == 403
    reader = api.new_key("rex")
    assert reader.client.post("/v1/tuning/active/reset", headers=reader.headers).status_code == 403
    r = reader.client.post("/v1/tuning/proposals/p1/activate", headers=reader.headers)
    assert r.status_code == 403

    [denied] = export(acme, action=["tenant.create"])
    assert (denied["outcome"], denied["tenant_id"], denied["targets"]) == ("denied", "acme", {})
    logged = export(api, action=["tenant.create", "tuning.reset", "tuning.activate"])
    assert [(e["action"], e["outcome"], e["principal"]) for e in logged] == [
        ("tenant.create", "ok", "admin"), ("tuning.reset", "denied", "rex"), ("tuning.activate", "denied", "rex"),
    ]
    assert logged[2]["targets"] == {"proposal_id": "p1"}
