"""The foundation, end to end through HTTP: keys, upload, jobs, versions, search, ACLs, errors."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.api import Api

pytestmark = pytest.mark.integration

REFUND = (
    "Refund policy. Customers may request a full refund within 30 days of purchase. "
    "Refunds are issued to the original payment method within five business days."
)
VPN = (
    "VPN setup guide. Install the WireGuard client, import the configuration file from the "
    "IT portal, and connect before opening the internal wiki."
)


@pytest.fixture
def api(make_container):  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        yield Api(client)


def test_health_needs_no_key_but_everything_else_does(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200
    r = api.client.post("/v1/search", json={"query": "refund"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"
    r = api.as_key("not-a-key").client.post(
        "/v1/search", json={"query": "refund"}, headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401


def test_only_admins_create_keys(api: Api) -> None:
    reader = api.new_key("bob")
    r = reader.client.post("/v1/keys", headers=reader.headers, json={"user": "mallory", "role": "admin"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "permission_denied"


def test_acl_decides_who_finds_a_document(api: Api) -> None:
    editor = api.new_key("erin", ["support"], role="editor")
    support = api.new_key("alice", ["support"])
    outsider = api.new_key("oscar", ["sales"])
    doc = editor.ingest("refunds.txt", REFUND, acl=["group:support"], tags=["policy"])

    hits = support.search("how long do I have to ask for my money back?")
    assert hits and hits[0]["doc_id"] == doc["document_id"]
    assert "30 days" in hits[0]["text"]
    first = hits[0]
    assert REFUND[first["char_start"] : first["char_end"]] == first["text"]

    assert outsider.search("refund within 30 days") == []
    assert outsider.client.get(f"/v1/documents/{doc['document_id']}", headers=outsider.headers).status_code == 404
    assert outsider.client.get("/v1/documents", headers=outsider.headers).json()["count"] == 0
    listed = support.client.get("/v1/documents", headers=support.headers).json()
    assert [d["document_id"] for d in listed["data"]] == [doc["document_id"]]
    assert listed["data"][0]["tags"] == ["policy"]


def test_filters_narrow_results(api: Api) -> None:
    api.ingest("refunds.txt", REFUND, acl=["tenant:*"], tags=["policy"])
    api.ingest("vpn.txt", VPN, acl=["tenant:*"], tags=["it"])
    both = {h["title"] for h in api.search("policy guide", top_k=10)}
    assert both == {"refunds.txt", "vpn.txt"}
    only_it = api.search("policy guide", top_k=10, filters={"tags": ["it"]})
    assert {h["title"] for h in only_it} == {"vpn.txt"}


def test_expired_documents_are_invisible_unless_as_of_says_otherwise(api: Api) -> None:
    api.ingest("old.txt", REFUND, acl=["tenant:*"], effective_to="2020-01-01T00:00:00Z")
    assert api.search("refund within 30 days") == []
    past = api.search("refund within 30 days", filters={"as_of": "2019-06-01T00:00:00Z"})
    assert past and past[0]["title"] == "old.txt"
    api.ingest("next.txt", VPN, acl=["tenant:*"], effective_from="2999-01-01T00:00:00Z")
    assert api.search("WireGuard VPN configuration") == []
    later = api.search("WireGuard VPN configuration", filters={"as_of": "2999-06-01T00:00:00Z"})
    assert later and later[0]["title"] == "next.txt"


def test_new_version_replaces_old_chunks_and_identical_upload_is_a_noop(api: Api) -> None:
    v1 = api.ingest("faq.txt", REFUND, doc_id="faq", acl=["tenant:*"])
    assert v1["version"] == 1
    again = api.upload("faq.txt", REFUND.encode(), {"title": "faq.txt", "doc_id": "faq", "acl": ["tenant:*"]})
    assert again.status_code == 200 and again.json()["unchanged"] is True and again.json()["version"] == 1

    v2 = api.ingest("faq.txt", VPN, doc_id="faq", acl=["tenant:*"])
    assert v2["version"] == 2
    assert all("30 days" not in h["text"] for h in api.search("refund within 30 days", top_k=20))
    hits = api.search("WireGuard VPN configuration")
    assert hits and all(h["version"] == 2 for h in hits)
    doc = api.client.get("/v1/documents/faq", headers=api.headers).json()
    assert doc["current_version"] == 2
    assert [v["status"] for v in doc["versions"]] == ["indexed", "indexed"]


def test_delete_removes_every_chunk(api: Api) -> None:
    doc = api.ingest("refunds.txt", REFUND * 40, acl=["tenant:*"])
    assert api.search("refund within 30 days")
    r = api.client.delete(f"/v1/documents/{doc['document_id']}", headers=api.headers)
    assert r.status_code == 204
    assert api.search("refund within 30 days", top_k=20) == []
    assert api.client.get(f"/v1/documents/{doc['document_id']}", headers=api.headers).status_code == 404


def test_readers_cannot_upload_or_delete(api: Api) -> None:
    reader = api.new_key("rita", ["support"])
    r = reader.upload("a.txt", b"hello world", {"title": "a"})
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("name", "data", "meta", "status", "code"),
    [
        ("image.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, {"title": "x"}, 415, "unsupported_media_type"),
        ("empty.txt", b"", {"title": "x"}, 422, "empty_document"),
        ("a.txt", b"some text", None, 422, "missing_metadata"),
        ("a.txt", b"some text", {"acl": ["everyone"]}, 422, "invalid_input"),
        ("a.txt", b"some text", {"unknown_field": 1}, 422, "invalid_input"),
    ],
)
def test_bad_uploads_get_clear_errors(api: Api, name: str, data: bytes, meta, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    r = api.upload(name, data, meta)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code
    assert "Traceback" not in r.text


def test_oversized_upload_is_413(make_container) -> None:  # type: ignore[no-untyped-def]
    container = make_container(ingestion={"max_upload_bytes": 1000})
    with TestClient(create_app(container=container)) as client:
        r = Api(client).upload("big.txt", b"word " * 1000, {"title": "big"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_corrupt_document_fails_only_its_own_job(api: Api) -> None:
    bad = api.upload("report.pdf", b"%PDF-1.7\n" + b"\x00garbage" * 100, {"title": "broken"}, "application/pdf")
    good = api.upload("refunds.txt", REFUND.encode(), {"title": "refunds", "acl": ["tenant:*"]})
    assert bad.status_code == 202 and good.status_code == 202
    failed = api.wait(bad.json()["job_id"])
    assert failed["state"] == "failed"
    assert failed["error"] and "Traceback" not in failed["error"]
    assert api.wait(good.json()["job_id"])["state"] == "indexed"
    assert api.search("refund within 30 days")


def test_data_survives_a_restart(make_container, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "persist"
    first = make_container(data_dir)
    with TestClient(create_app(container=first)) as client:
        Api(client).ingest("refunds.txt", REFUND, acl=["tenant:*"])
    first.close()
    second = make_container(data_dir)
    with TestClient(create_app(container=second)) as client:
        hits = Api(client).search("refund within 30 days")
    assert hits and hits[0]["title"] == "refunds.txt"


def test_concurrent_search_sees_one_whole_version(api: Api) -> None:
    """While a document is re-versioned, every search sees the old or the new text: never both,
    never neither."""
    old = " ".join(f"Alpha paragraph {i} about the refund policy for orders." for i in range(60))
    new = " ".join(f"Beta paragraph {i} about the refund policy for orders." for i in range(60))
    api.ingest("policy.txt", old, doc_id="policy", acl=["tenant:*"])
    seen: list[set[int]] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            hits = api.search("refund policy for orders", top_k=10)
            seen.append({h["version"] for h in hits})

    t = threading.Thread(target=searcher)
    t.start()
    try:
        for i in range(3):
            api.ingest("policy.txt", new if i % 2 == 0 else old, doc_id="policy", acl=["tenant:*"])
    finally:
        stop.set()
        t.join()
    assert seen, "the searcher thread never ran"
    assert all(len(versions) == 1 for versions in seen), [v for v in seen if len(v) != 1][:5]


def test_download_returns_the_original_to_whoever_may_see_it_and_404_to_others(api: Api) -> None:
    editor = api.new_key("erin", ["support"], role="editor")
    support = api.new_key("alice", ["support"])
    outsider = api.new_key("oscar", ["sales"])
    page = b"<html><body><script>alert(1)</script><p>Refunds within 30 days.</p></body></html>"
    r = editor.upload("refunds.html", page, {"title": "refunds", "doc_id": "page", "acl": ["group:support"]},
                      ctype="text/html")
    assert r.status_code == 202 and editor.wait(r.json()["job_id"])["state"] == "indexed"
    editor.ingest("refunds.html", VPN, doc_id="page", acl=["group:support"])  # version 2, plain text

    first = support.client.get("/v1/documents/page/download?version=1", headers=support.headers)
    assert first.status_code == 200 and first.content == page
    # stored HTML is served as a download, never rendered on the API's origin
    assert first.headers["content-disposition"].startswith("attachment;")
    assert first.headers["x-content-type-options"] == "nosniff"
    assert first.headers["content-security-policy"] == "sandbox"
    current = support.client.get("/v1/documents/page/download", headers=support.headers)
    assert current.status_code == 200 and current.content == VPN.encode()

    for who, url in ((outsider, "/v1/documents/page/download"), (support, "/v1/documents/page/download?version=9"),
                     (support, "/v1/documents/missing/download")):
        r = who.client.get(url, headers=who.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert support.client.get("/v1/documents/page/download").status_code == 401
