"""Data governance end to end: PII policy at ingest (tokenize / mask), reveal for `pii:read`,
retention purge and erasure (by document and by data subject). Real engine, real SQL."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.services import pii_vault
from core.models import AccessScope
from ingestion.pii import PiiType, token_text
from orchestration.types import AnswerResult
from tests.app.api import Api
from tests.app.test_celery_jobs import redis_server, start_worker  # noqa: F401  (fixtures)
from tests.app.test_postgres import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

EMAIL, CARD = "alice@example.com", "4111 1111 1111 1111"
REFUND = (
    f"Refund policy. Refund requests go to {EMAIL} within 30 days of purchase. "
    f"The card {CARD} on file is credited within five business days."
)
TOKEN = re.compile(r"\[PII:EMAIL:[0-9a-f]{8,}\]")


@pytest.fixture(params=["sqlite"])
def setup(request, make_container):  # type: ignore[no-untyped-def]
    """SQLite by default; tests parametrized with "postgres" run on the real PostgreSQL server."""
    overrides = {"database_url": request.getfixturevalue("pg_url")} if request.param == "postgres" else {}
    container = make_container(**overrides)
    with TestClient(create_app(container=container)) as client:
        yield Api(client), container


on_both_databases = pytest.mark.parametrize("setup", ["sqlite", "postgres"], indirect=True)


def set_policy(api: Api, **policy: str) -> dict[str, Any]:
    r = api.client.put("/v1/admin/pii-policy", headers=api.headers, json={"policy": policy})
    assert r.status_code == 200, r.text
    return r.json()


def new_key(api: Api, user: str, permissions: list[str]) -> Api:
    body = {"user": user, "role": "reader", "permissions": permissions}
    r = api.client.post("/v1/keys", headers=api.headers, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["permissions"] == permissions
    return api.as_key(r.json()["key"])


def stored_files_contain(data_dir: Path, needle: str) -> list[str]:
    """Every file Cairn wrote (engine segments and WAL, SQL database) except the stored
    originals, which keep the upload as it was sent."""
    blobs = data_dir / "blobs"
    return [
        str(p) for p in data_dir.rglob("*")
        if p.is_file() and blobs not in p.parents and needle.encode() in p.read_bytes()
    ]


def engine_points(container: Any, doc_id: str) -> list[dict[str, Any]]:
    return [h.payload for h in container.index.chunks_of(AccessScope("default", ("tenant:*",)), doc_id)]


def test_tokenize_keeps_raw_values_out_of_the_index_and_reveals_them_only_to_pii_read(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    policy = set_policy(api, email="tokenize", card="tokenize")
    assert policy["source"] == "tenant" and policy["policy"]["phone"] == "keep"
    doc = api.ingest("refunds.txt", REFUND, acl=["tenant:*"])
    doc_id = doc["document_id"]

    hits = api.search("where do refund requests go", top_k=5)
    assert hits and all(EMAIL not in h["text"] and "4111" not in h["text"] for h in hits)
    assert TOKEN.search(hits[0]["text"]) and "[PII:CARD:" in hits[0]["text"]
    points = engine_points(container, doc_id)
    assert points and all(EMAIL not in repr(p) and "4111" not in repr(p) for p in points)
    for p in points:  # offsets index the stored (tokenized) text, so each chunk is still exact
        assert p["char_end"] - p["char_start"] == len(p["text"])
    container.index.close()  # flush the engine, then look at every byte on disk
    assert stored_files_contain(container.settings.data_dir, EMAIL) == []
    assert stored_files_contain(container.settings.data_dir, CARD) == []
    container.index.warm_up()

    counts = api.client.get(f"/v1/documents/{doc_id}", headers=api.headers).json()["pii_counts"]
    assert counts == {"email": 1, "card": 1}

    question = "Where do refund requests go?"
    reader = new_key(api, "rita", [])
    seen = reader.answer(question)
    assert not seen["abstained"] and TOKEN.search(seen["answer"]) and EMAIL not in seen["answer"]
    assert all(EMAIL not in c["quote"] for c in seen["citations"])

    privileged = new_key(api, "priya", ["pii:read"])
    shown = privileged.answer(question)
    assert not shown["abstained"] and EMAIL in shown["answer"] and not TOKEN.search(shown["answer"])
    cited = shown["citations"][0]
    assert cited["doc_id"] == doc_id and cited["supported"] and EMAIL in cited["quote"]
    # the quote was verified against the stored chunk before the reveal: tokenizing it again gives
    # a verbatim span of that chunk at the cited offsets
    token = TOKEN.search(seen["answer"]).group()  # type: ignore[union-attr]
    stored_quote = cited["quote"].replace(EMAIL, token)
    chunk = next(h for h in privileged.search(question, top_k=20) if h["chunk_id"] == cited["chunk_id"])
    start = cited["char_start"] - chunk["char_start"]
    assert chunk["text"][start : start + len(stored_quote)] == stored_quote

    # the run record keeps the token; the stream's final event reveals like the JSON answer
    assert EMAIL not in str(api.run(shown["run_id"]))
    final = privileged.answer_events(question)[-1]
    assert final[0] == "final" and EMAIL in final[1]["answer"]

    # the stored original holds the raw values: only pii:read may download it
    r = reader.client.get(f"/v1/documents/{doc_id}/download", headers=reader.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    r = privileged.client.get(f"/v1/documents/{doc_id}/download", headers=privileged.headers)
    assert r.status_code == 200 and r.content == REFUND.encode()


def test_reveal_is_limited_to_tokens_ingestion_wrote_into_the_cited_quotes(setup) -> None:  # type: ignore[no-untyped-def]
    """A pii:read key sees values only for tokens in what it was shown: not a token the model
    wrote on its own (asked to "repeat" one), nor a token string planted in a readable document."""
    api, container = setup
    set_policy(api, email="tokenize")
    api.ingest("hr.txt", f"Payroll questions go to {EMAIL} in HR.", acl=["group:hr"])
    token = token_text(PiiType.email, container.pii_vault.keys.mac("default", EMAIL)[:8])
    planted = api.ingest("notes.txt", f"Shipping questions go to {token} in the warehouse.", acl=["tenant:*"])
    privileged = new_key(api, "priya", ["pii:read"])  # not in group hr

    shown = privileged.answer("Where do shipping questions go?")
    assert shown["citations"] and shown["citations"][0]["doc_id"] == planted["document_id"]
    assert token in shown["citations"][0]["quote"] and token in shown["answer"]
    assert EMAIL not in str(shown)

    principal = container.keys.authenticate(privileged.key)
    parroted = AnswerResult(answer=f"As asked: {token}", run_id="r1")
    assert container.answers.revealed(principal, parroted).answer == f"As asked: {token}"


def test_an_unscanned_original_needs_pii_read_while_the_policy_redacts_anything(setup) -> None:  # type: ignore[no-untyped-def]
    """A version that never reached the scan (queued, processing, failed) has no PII records,
    so nobody knows what its original holds."""
    api, _ = setup
    broken = b"%PDF-1.7\n" + f"Contact {EMAIL}".encode() + b"\x00garbage" * 100
    r = api.upload("report.pdf", broken, {"title": "broken", "acl": ["tenant:*"]}, "application/pdf")
    assert r.status_code == 202, r.text
    assert api.wait(r.json()["job_id"])["state"] == "failed"
    url = f"/v1/documents/{r.json()['document_id']}/download"
    reader, privileged = new_key(api, "rita", []), new_key(api, "priya", ["pii:read"])
    assert reader.client.get(url, headers=reader.headers).status_code == 200  # the policy keeps everything

    set_policy(api, email="keep", phone="mask")
    r = reader.client.get(url, headers=reader.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied")
    r = privileged.client.get(url, headers=privileged.headers)
    assert r.status_code == 200 and r.content == broken


def test_celery_workers_apply_the_tenant_policy_with_the_shared_key(  # type: ignore[no-untyped-def]
    make_container, redis_server, start_worker, tmp_path  # noqa: F811
) -> None:
    """Workers parse and chunk (so they redact); the API process reveals: both read one key file."""
    data_dir = tmp_path / "celery"
    container = make_container(data_dir=data_dir, redis_url=redis_server.url)
    start_worker({"CAIRN_DATA_DIR": str(data_dir), "CAIRN_REDIS_URL": redis_server.url})
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        set_policy(api, email="tokenize")
        doc = api.upload("refunds.txt", REFUND.encode(), {"acl": ["tenant:*"]}).json()
        assert api.wait(doc["job_id"], timeout=180)["state"] == "indexed"
        points = engine_points(container, doc["document_id"])
        assert points and all(EMAIL not in repr(p) for p in points) and TOKEN.search(points[0]["text"])
        shown = new_key(api, "priya", ["pii:read"]).answer("Where do refund requests go?")
        assert EMAIL in shown["answer"]


def test_key_file_first_writer_wins_and_a_bad_key_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "pii.key"
    theirs = secrets.token_bytes(32)
    real_link = os.link

    def racing_link(src: Any, dst: Any) -> None:  # another process finishes its key file first
        Path(dst).write_text(base64.urlsafe_b64encode(theirs).decode() + "\n")
        real_link(src, dst)

    monkeypatch.setattr(pii_vault.os, "link", racing_link)
    assert pii_vault._key_file(path) == theirs
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["pii.key"]  # no temporary file left behind

    with ThreadPoolExecutor(8) as pool:  # many processes starting at once agree on one key
        fresh = tmp_path / "fresh" / "pii.key"
        keys = set(pool.map(lambda _: pii_vault._key_file(fresh), range(32)))
    assert len(keys) == 1 and len(keys.pop()) == 32
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600

    for bad in ("", "\n", base64.urlsafe_b64encode(b"short").decode(), "not base64 at all!"):
        path.write_text(bad)
        with pytest.raises(ValueError, match="32-byte key"):
            pii_vault._key_file(path)


def test_a_title_carrying_pii_is_redacted_like_the_text(setup) -> None:  # type: ignore[no-untyped-def]
    """A file name is the default title, and the title is copied onto every chunk and into prompts."""
    api, container = setup
    set_policy(api, email="tokenize")
    doc = api.ingest("complaint.txt", "The blue kettle arrived with a cracked lid.", acl=["tenant:*"],
                     title=f"Complaint from {EMAIL} about a kettle")
    points = engine_points(container, doc["document_id"])
    assert points and all(EMAIL not in p["title"] and TOKEN.search(p["title"]) for p in points)
    hits = api.search("blue kettle cracked lid")
    assert hits and EMAIL not in hits[0]["title"] and TOKEN.search(hits[0]["title"])
    listed = api.client.get(f"/v1/documents/{doc['document_id']}", headers=api.headers).json()
    assert EMAIL not in listed["title"] and listed["pii_counts"] == {"email": 1}
    # the title's value is in the vault like the text's: erasure by subject finds the document
    r = api.client.post("/v1/admin/erasure", headers=api.headers, json={"subject": EMAIL, "dry_run": True})
    assert r.status_code == 200, r.text
    assert doc["document_id"] in json.dumps(r.json())


def test_mask_replaces_values_with_placeholders_and_keeps_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    api.ingest("kept.txt", "Office hours. Ask dave@example.com about parking permits.", acl=["tenant:*"])
    set_policy(api, email="mask", card="mask")
    doc = api.ingest("refunds.txt", REFUND, acl=["tenant:*"])
    [hit] = api.search("where do refund requests go", top_k=1)
    assert "go to [EMAIL] within 30 days" in hit["text"] and "The card [CARD] on file" in hit["text"]
    assert all(EMAIL not in repr(p) for p in engine_points(container, doc["document_id"]))
    container.index.close()
    assert stored_files_contain(container.settings.data_dir, EMAIL) == []
    assert stored_files_contain(container.settings.data_dir, "dave@example.com")  # kept: the scan sees it
    container.index.warm_up()
    privileged = new_key(api, "priya", ["pii:read"])
    answer = privileged.answer("Where do refund requests go?")
    assert "[EMAIL]" in answer["answer"] and EMAIL not in answer["answer"]  # nothing to reveal


def test_policy_api_validates_and_is_admin_only(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    default = api.client.get("/v1/admin/pii-policy", headers=api.headers).json()
    assert default["source"] == "default" and set(default["policy"].values()) == {"keep"}
    for body in ({"policy": {"passport": "mask"}}, {"policy": {"email": "hide"}}, {"email": "mask"}):
        r = api.client.put("/v1/admin/pii-policy", headers=api.headers, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_input"), body
    reader = api.new_key("rita")
    r = reader.client.put("/v1/admin/pii-policy", headers=reader.headers, json={"policy": {"email": "keep"}})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied")
    r = api.client.post("/v1/keys", headers=api.headers, json={"user": "x", "permissions": ["pii:write"]})
    assert r.status_code == 422


@on_both_databases
def test_purge_removes_documents_past_effective_to_plus_grace(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    now = datetime.now(UTC)
    old = api.ingest("old.txt", "Old travel policy. Trains only.", acl=["tenant:*"],
                     effective_to=(now - timedelta(days=400)).isoformat())
    recent = api.ingest("recent.txt", "Recent travel policy. Planes allowed.", acl=["tenant:*"],
                        effective_to=(now - timedelta(days=5)).isoformat())  # inside the 30-day grace
    current = api.ingest("current.txt", "Current travel policy. Bikes encouraged.", acl=["tenant:*"])
    assert engine_points(container, old["document_id"])

    r = api.client.post("/v1/admin/purge", headers=api.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["doc_id"] for d in body["erased"]] == [old["document_id"]]
    assert body["erased"][0]["versions"] == 1 and body["erased"][0]["blobs"] == 1
    assert api.client.get(f"/v1/documents/{old['document_id']}", headers=api.headers).status_code == 404
    assert engine_points(container, old["document_id"]) == []
    for kept in (recent, current):
        assert api.client.get(f"/v1/documents/{kept['document_id']}", headers=api.headers).status_code == 200
    assert stored_files_contain(container.settings.data_dir / "blobs", "Trains only") == []
    assert api.client.post("/v1/admin/purge", headers=api.headers).json()["erased"] == []
    # the schedule runs the same purge over every tenant
    assert container.governance.purge_due() == []


@on_both_databases
def test_erasure_by_subject_removes_exactly_the_matching_documents(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    set_policy(api, email="tokenize")
    tokenized = api.ingest("a.txt", f"Complaint. {EMAIL} asked for a refund of the blue kettle.", acl=["tenant:*"])
    other = api.ingest("b.txt", "Complaint. bob@example.com asked for a refund of the red toaster.",
                       acl=["tenant:*"])
    set_policy(api, email="keep")
    kept = api.ingest("c.txt", "Call notes. ALICE@example.com wants the kettle by Friday.", acl=["group:support"])
    named = api.ingest("d.txt", "Alice Liddell visited the store on Monday.", acl=["tenant:*"])
    cited = api.answer("Who asked for a refund of the blue kettle?")
    assert tokenized["document_id"] in {c["doc_id"] for c in cited["citations"]}

    r = api.client.post("/v1/admin/erasure", headers=api.headers, json={"subject": "Alice@Example.com"})
    assert r.status_code == 200, r.text
    result = r.json()
    erased = {d["doc_id"]: d["matched_by"] for d in result["erased"]}
    assert erased == {tokenized["document_id"]: ["pii_hash"], kept["document_id"]: ["pii_hash", "text"]}
    assert result["vault_entries"] == 1 and result["runs_redacted"] >= 1
    for doc in (other, named):
        assert api.client.get(f"/v1/documents/{doc['document_id']}", headers=api.headers).status_code == 200
    for doc in (tokenized, kept):
        assert engine_points(container, doc["document_id"]) == []
        assert api.client.get(f"/v1/documents/{doc['document_id']}", headers=api.headers).status_code == 404

    run = api.run(cited["run_id"])
    quotes = [c for c in run["result"]["citations"] if c["doc_id"] == tokenized["document_id"]]
    assert quotes and all(c["quote"] == "[erased]" and c["chunk_id"] for c in quotes)
    stored = [e.output for e in container.runs.events(cited["run_id"]) if e.output]
    chunks = [c for out in stored for c in out.get("chunks", []) if c["doc_id"] == tokenized["document_id"]]
    assert chunks and all(c["text"] == "[erased]" and c["chunk_id"] for c in chunks)
    # the answer restated what it cited: it goes too, in the run's result and in the step event
    assert run["result"]["answer"] == "[erased]" and cited["answer"] not in str(run)
    generated = [out for out in stored if out.get("citations")]
    assert generated and all(out["answer"] == out.get("text", "[erased]") == "[erased]" for out in generated)

    # a value no detector knows is found in the text; dry_run only reports
    body = {"subject": "alice liddell", "dry_run": True}
    preview = api.client.post("/v1/admin/erasure", headers=api.headers, json=body).json()
    assert preview["dry_run"] and [d["doc_id"] for d in preview["erased"]] == [named["document_id"]]
    assert api.client.get(f"/v1/documents/{named['document_id']}", headers=api.headers).status_code == 200


def test_erasure_by_subject_text_matches_whole_words_only(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    tom = api.ingest("tom.txt", "Tom's ticket: the printer jams.", acl=["tenant:*"])
    ann = api.ingest("Minutes with Ann", "Budget review notes.", acl=["tenant:*"])
    api.ingest("customs.txt", "Customs forms are at the bottom; automatic renewal applies.", acl=["tenant:*"])
    api.ingest("Annual report", "Revenue grew. The annual audit found nothing; planning continues.",
               acl=["tenant:*"])

    def preview(subject: str) -> list[str]:
        r = api.client.post("/v1/admin/erasure", headers=api.headers, json={"subject": subject, "dry_run": True})
        assert r.status_code == 200, r.text
        return [d["doc_id"] for d in r.json()["erased"]]

    assert preview("Tom") == [tom["document_id"]]  # not "custom", "bottom" or "automatic"
    assert preview("ann") == [ann["document_id"]]  # the title; not "annual" or "planning"
    assert preview("printer jam") == []  # a phrase must end where a word ends


def test_erasure_by_id_and_delete_with_erase(setup) -> None:  # type: ignore[no-untyped-def]
    api, container = setup
    set_policy(api, email="tokenize")
    first = api.ingest("a.txt", f"Escalations go to {EMAIL}.", acl=["tenant:*"])
    second = api.ingest("b.txt", "Escalations go to carol@example.com.", acl=["tenant:*"])
    body = {"doc_ids": [first["document_id"], "nope"]}
    result = api.client.post("/v1/admin/erasure", headers=api.headers, json=body).json()
    assert [d["doc_id"] for d in result["erased"]] == [first["document_id"]] and result["not_found"] == ["nope"]
    assert result["vault_entries"] == 1

    reader = api.new_key("rita")
    r = reader.client.delete(f"/v1/documents/{second['document_id']}?erase=true", headers=reader.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied")
    r = api.client.delete(f"/v1/documents/{second['document_id']}?erase=true", headers=api.headers)
    assert r.status_code == 204
    assert engine_points(container, second["document_id"]) == []
    assert api.client.get(f"/v1/documents/{second['document_id']}", headers=api.headers).status_code == 404


def test_erasure_requests_are_validated_and_admin_only(setup) -> None:  # type: ignore[no-untyped-def]
    api, _ = setup
    for body in ({}, {"doc_ids": ["a"], "subject": "alice@example.com"}, {"subject": "al"}, {"doc_ids": []}):
        r = api.client.post("/v1/admin/erasure", headers=api.headers, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_input"), body
    editor = api.new_key("ed", role="editor")
    r = editor.client.post("/v1/admin/erasure", headers=editor.headers, json={"subject": "alice@example.com"})
    assert r.status_code == 403
    assert editor.client.post("/v1/admin/purge", headers=editor.headers).status_code == 403
