"""HTTP JSON connector against a local API server started by the test: page-number and
next-link pagination, the bearer token checked by the server, a page that keeps failing
(its items fail with a reason, the others index, nothing is deleted), then recovery."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app import connector_api as conn
from tests.app.api import Api

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"
PAGE_SIZE = 3

TOPICS = ["invoice totals", "warehouse robots", "solar panels", "coffee machine", "parking garage",
          "security badges", "printer toner", "holiday calendar"]


class FakeApi:
    """Tickets at /tickets?page=N&per_page=3 and notes at /notes (next links)."""

    def __init__(self) -> None:
        self.tickets = [
            {"id": f"T-{i}", "fields": {"subject": f"About the {topic}", "body": f"A question about the {topic}."},
             "permissions": {"groups": ["support"] if i % 2 else ["support", "sales"]}, "labels": ["api"]}
            for i, topic in enumerate(TOPICS, start=1)
        ]
        self.fail_page: int | None = None
        self.auth_headers: list[str | None] = []

    def handle(self, path: str, query: dict[str, list[str]], auth: str | None) -> tuple[int, Any]:
        self.auth_headers.append(auth)
        if auth != f"Bearer {TOKEN}":
            return 401, {"error": "bad token"}
        if path == "/tickets":
            page, size = int(query["page"][0]), int(query["per_page"][0])
            if page == self.fail_page:
                return 500, {"error": "boom"}
            return 200, {"data": self.tickets[(page - 1) * size: page * size], "meta": {"total": len(self.tickets)}}
        if path == "/notes":
            cursor = int(query.get("cursor", ["0"])[0])
            notes = [{"id": n, "title": f"Note {n}", "text": f"Meeting note number {n} about quarterly planning."}
                     for n in range(cursor, min(cursor + 2, 5))]
            nxt = f"/notes?cursor={cursor + 2}" if cursor + 2 < 5 else None
            return 200, {"items": notes, "links": {"next": nxt}}
        return 404, {}


@pytest.fixture
def fake_api() -> Iterator[tuple[FakeApi, str]]:
    api = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, body = api.handle(url.path, parse_qs(url.query), self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _tickets_config(base: str, token: str = TOKEN) -> dict[str, Any]:
    return {
        "url": f"{base}/tickets", "token": token, "items_path": "data", "pagination": "page",
        "page_param": "page", "page_size_param": "per_page", "page_size": PAGE_SIZE, "retries": 1,
        "fields": {"id": "id", "title": "fields.subject", "text": ["fields.subject", "fields.body"],
                   "acl": "permissions.groups", "tags": "labels"},
    }


def test_pages_token_failing_page_and_recovery(make_container, fake_api) -> None:  # type: ignore[no-untyped-def]
    server, base = fake_api
    container = make_container(connectors={"allowed_hosts": ["127.0.0.1"], "scheduler": False})
    with TestClient(create_app(container=container)) as client:
        admin = Api(client)
        support, sales = admin.new_key("sue", ["support"]), admin.new_key("sal", ["sales"])
        r = admin.client.post("/v1/connectors", headers=admin.headers,
                              json={"name": "helpdesk", "kind": "http_json", "config": _tickets_config(base)})
        assert r.status_code == 201 and TOKEN not in r.text and r.json()["config"]["token"] == "***"
        created = r.json()

        server.fail_page = 2
        first = conn.sync(admin, created["id"])["last_sync"]
        assert first["status"] == "partial" and first["indexed"] == 5 and first["failed"] == 1
        reasons = [e["reason"] for e in first["errors"]]
        assert any("page 2: HTTP 500" in r and "not read" in r for r in reasons), reasons
        assert any(r.startswith("deletions skipped") for r in reasons), reasons
        assert set(server.auth_headers) == {f"Bearer {TOKEN}"}
        assert "About the coffee machine" not in conn.titles(support.search("coffee machine question"))  # page 2
        assert "About the warehouse robots" in conn.titles(sales.search("warehouse robots"))
        report = conn.reconcile(admin, created["id"])
        assert report["source_count"] is None and "page 2: HTTP 500" in report["source_error"]
        assert not report["in_sync"] and report["indexed_count"] == 5

        server.fail_page = None
        second = conn.sync(admin, created["id"])["last_sync"]
        assert (second["status"], second["indexed"], second["unchanged"], second["failed"]) == ("succeeded", 3, 5, 0)
        assert "About the coffee machine" in conn.titles(support.search("coffee machine question"))
        assert conn.reconcile(admin, created["id"])["in_sync"]

        server.tickets = [t for t in server.tickets if t["id"] != "T-2"]
        server.tickets[0]["permissions"]["groups"] = ["sales"]  # T-1: support -> sales
        third = conn.sync(admin, created["id"])["last_sync"]
        assert (third["deleted"], third["indexed"]) == (1, 1)
        assert "About the warehouse robots" not in conn.titles(sales.search("warehouse robots"))
        assert "About the invoice totals" in conn.titles(sales.search("invoice totals"))
        assert "About the invoice totals" not in conn.titles(support.search("invoice totals"))


def test_next_links_and_a_wrong_token(make_container, fake_api) -> None:  # type: ignore[no-untyped-def]
    server, base = fake_api
    container = make_container(connectors={"allowed_hosts": ["127.0.0.1"], "scheduler": False})
    with TestClient(create_app(container=container)) as client:
        admin = Api(client)
        notes = conn.create(admin, "notes", "http_json", {
            "url": f"{base}/notes", "token": TOKEN, "items_path": "items", "next_path": "links.next",
            "fields": {"id": "id", "title": "title", "text": ["text"]}}, acl_default=["tenant:*"])
        done = conn.sync(admin, notes["id"])
        assert (done["last_sync"]["status"], done["last_sync"]["indexed"]) == ("succeeded", 5)
        assert "Note 4" in conn.titles(admin.new_key("rita").search("meeting note number 4 quarterly planning"))

        wrong = conn.create(admin, "wrong", "http_json", _tickets_config(base, token="nope"))
        failed = conn.sync(admin, wrong["id"])["last_sync"]
        assert failed["indexed"] == 0 and failed["failed"] == 1
        assert "refused the credentials (HTTP 401)" in failed["errors"][0]["reason"]
        assert server.auth_headers.count("Bearer nope") <= 2  # a refused token stops paging at once
