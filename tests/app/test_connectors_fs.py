"""Filesystem connector through the API: new, changed and deleted files across syncs, globs,
ACL by path, the allow-list, who may see a connector, reconciliation, the scheduler."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app import connector_api as conn
from tests.app.api import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    (root / "hr").mkdir(parents=True)
    (root / "drafts").mkdir()
    (root / "handbook.md").write_text("# Handbook\n\nThe office opens at 8am and closes at 6pm on weekdays.")
    (root / "vpn.txt").write_text("Connect to the VPN with the Cairn client before opening the intranet.")
    (root / "hr" / "salaries.txt").write_text("Salary bands are reviewed every April by the HR committee.")
    (root / "drafts" / "idea.txt").write_text("A draft about a rooftop garden for the office building.")
    (root / "logo.png").write_bytes(b"\x89PNG not really")
    return root


def _client(make_container, root: Path, **connectors: object) -> TestClient:  # type: ignore[no-untyped-def]
    container = make_container(connectors={"filesystem_roots": [str(root)], "scheduler": False, **connectors})
    return TestClient(create_app(container=container))


def _bump(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a visibly newer mtime


def test_new_changed_and_deleted_files_across_two_syncs(make_container, share: Path) -> None:  # type: ignore[no-untyped-def]
    with _client(make_container, share) as client:
        admin = Api(client)
        editor = admin.new_key("erin", role="editor")
        staff, hr = admin.new_key("sam", ["staff"]), admin.new_key("hana", ["hr"])
        created = conn.create(editor, "shared-drive", "filesystem", {
            "root": str(share), "include": ["*.md", "*.txt"], "exclude": ["drafts/*"],
            "acl_by_glob": {"hr/*": ["hr"]},
        }, acl_default=["group:staff"])
        assert created["last_sync"] is None and created["owner"] == "erin"

        first = conn.sync(editor, created["id"])
        assert first["last_sync"]["status"] == "succeeded", first
        counts = {k: first["last_sync"][k] for k in ("seen", "indexed", "unchanged", "failed", "deleted")}
        assert counts == {"seen": 3, "indexed": 3, "unchanged": 0, "failed": 0, "deleted": 0}
        assert first["items"] == {"total": 3, "indexed": 3, "pending": 0, "failed": 0}
        assert "handbook.md" in conn.titles(staff.search("when does the office open"))
        assert "salaries.txt" not in conn.titles(staff.search("salary bands review"))  # hr/* is group:hr only
        assert "salaries.txt" in conn.titles(hr.search("salary bands review"))
        assert "idea.txt" not in conn.titles(editor.search("rooftop garden"))  # excluded glob

        _bump(share / "handbook.md", "# Handbook\n\nThe office opens at 7am and closes at 5pm on weekdays.")
        (share / "vpn.txt").unlink()
        (share / "parking.txt").write_text("Parking permits are issued by reception on the ground floor.")
        second = conn.sync(editor, created["id"])["last_sync"]
        assert (second["seen"], second["indexed"], second["deleted"], second["failed"]) == (2, 2, 1, 0)
        hits = staff.search("when does the office open")
        assert hits[0]["title"] == "handbook.md" and "7am" in hits[0]["text"]
        assert "vpn.txt" not in conn.titles(staff.search("connect to the VPN client"))
        assert "parking.txt" in conn.titles(staff.search("parking permits reception"))
        docs = editor.client.get("/v1/documents", headers=editor.headers).json()
        assert {d["source"] for d in docs["data"]} == {"shared-drive"} and docs["count"] == 3

        third = conn.sync(editor, created["id"])["last_sync"]  # nothing changed: nothing read again
        assert (third["seen"], third["indexed"], third["deleted"]) == (0, 0, 0)
        report = conn.reconcile(editor, created["id"])
        assert report["in_sync"] and report["source_count"] == 3 and report["indexed_count"] == 3


def test_paths_outside_the_allow_list_and_who_may_see_a_connector(make_container, share: Path,
                                                                   tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "secret").mkdir()
    with _client(make_container, share) as client:
        admin = Api(client)
        editor, other = admin.new_key("erin", role="editor"), admin.new_key("olga", role="editor")
        reader = admin.new_key("rita")
        for root in (str(tmp_path / "secret"), "/etc", f"{share}/../secret"):
            r = editor.client.post("/v1/connectors", headers=editor.headers,
                                   json={"name": "x", "kind": "filesystem", "config": {"root": root}})
            assert r.status_code == 422, r.text
            assert "outside the allowed directories" in r.json()["error"]["message"]
        r = reader.client.post("/v1/connectors", headers=reader.headers,
                               json={"name": "x", "kind": "filesystem", "config": {"root": str(share)}})
        assert r.status_code == 403
        bad = editor.client.post("/v1/connectors", headers=editor.headers,
                                 json={"name": "x", "kind": "filesystem", "config": {"root": str(share), "oops": 1}})
        assert bad.status_code == 422 and "oops" in bad.json()["error"]["message"]

        mine = conn.create(editor, "drive", "filesystem", {"root": str(share)})
        dup = editor.client.post("/v1/connectors", headers=editor.headers,
                                 json={"name": "drive", "kind": "filesystem", "config": {"root": str(share)}})
        assert dup.status_code == 409
        for path in (f"/v1/connectors/{mine['id']}", f"/v1/connectors/{mine['id']}/reconcile"):
            assert other.client.get(path, headers=other.headers).status_code == 404
        assert other.client.post(f"/v1/connectors/{mine['id']}/sync", headers=other.headers).status_code == 404
        assert other.client.get("/v1/connectors", headers=other.headers).json()["count"] == 0
        assert admin.client.get("/v1/connectors", headers=admin.headers).json()["count"] == 1
        assert conn.get(admin, mine["id"])["name"] == "drive"
        assert other.client.delete(f"/v1/connectors/{mine['id']}", headers=other.headers).status_code == 404


def test_reconciliation_names_missing_items_and_why(make_container, share: Path) -> None:  # type: ignore[no-untyped-def]
    (share / "empty.txt").write_text("   ")
    (share / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    with _client(make_container, share) as client:
        admin = Api(client)
        created = conn.create(admin, "drive", "filesystem", {"root": str(share), "exclude": ["*.png"]})
        done = conn.sync(admin, created["id"])["last_sync"]
        assert done["status"] == "partial" and done["failed"] == 2 and done["indexed"] == 4
        assert {e["external_id"] for e in done["errors"]} == {"empty.txt", "broken.pdf"}
        (share / "late.txt").write_text("A file that arrived after the last sync.")

        report = conn.reconcile(admin, created["id"])
        assert not report["in_sync"]
        assert (report["source_count"], report["indexed_count"], report["missing_count"]) == (7, 4, 3)
        why = {m["external_id"]: (m["reason"], m["detail"]) for m in report["missing"]}
        assert why["empty.txt"] == ("failed", "the uploaded file is empty")
        assert why["broken.pdf"][0] == "failed" and why["broken.pdf"][1]
        assert why["late.txt"][0] == "never_seen"

        # a document deleted behind the connector's back is reported, and a full sync restores it
        doc_id = next(d["document_id"] for d in admin.client.get("/v1/documents", headers=admin.headers).json()["data"]
                      if d["title"] == "vpn.txt")
        assert admin.client.delete(f"/v1/documents/{doc_id}", headers=admin.headers).status_code == 204
        why = {m["external_id"]: m["reason"] for m in conn.reconcile(admin, created["id"])["missing"]}
        assert why["vpn.txt"] == "not_in_index"
        full = conn.sync(admin, created["id"], full=True)["last_sync"]
        assert full["full"] and full["indexed"] >= 2  # vpn.txt again, plus late.txt
        assert "vpn.txt" in conn.titles(admin.search("connect to the VPN client"))

        r = admin.client.delete(f"/v1/connectors/{created['id']}", headers=admin.headers)
        assert r.status_code == 204
        assert admin.client.get("/v1/documents", headers=admin.headers).json()["count"] == 0


def test_the_scheduler_starts_syncs_on_their_interval(make_container, share: Path) -> None:  # type: ignore[no-untyped-def]
    with _client(make_container, share, scheduler=True, scheduler_tick_s=0.1, min_interval_s=1) as client:
        admin = Api(client)
        r = admin.client.post("/v1/connectors", headers=admin.headers, json={
            "name": "drive", "kind": "filesystem", "config": {"root": str(share)}, "interval_s": 0})
        assert r.status_code == 422 and "at least 1" in r.json()["error"]["message"]
        created = conn.create(admin, "drive", "filesystem", {"root": str(share), "include": ["*.md"]},
                              interval_s=1)
        assert created["schedule"]["interval_s"] == 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            last = conn.get(admin, created["id"])["last_sync"]
            if last and last["status"] == "succeeded":
                break
            time.sleep(0.1)
        # the first scheduled sync indexed the one markdown file; a later one (1 s on) may already
        # be the last and have found nothing new, so the document itself is what is checked
        assert last and last["trigger"] == "schedule", last
        docs = admin.client.get("/v1/documents", headers=admin.headers).json()
        assert docs["count"] == 1 and docs["data"][0]["status"] == "indexed", docs
        assert conn.get(admin, created["id"])["schedule"]["next_run_at"] is not None


def _age(container, job_id: str, hours: float) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from sqlalchemy import update

    from core.tables import Job, utcnow

    with container.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(hours=hours)))


def _job_age_s(container, job_id: str) -> float:  # type: ignore[no-untyped-def]
    from datetime import UTC

    from core.tables import Job, utcnow

    with container.sessions() as s:
        updated = s.get(Job, job_id).updated_at
    return (utcnow() - (updated if updated.tzinfo else updated.replace(tzinfo=UTC))).total_seconds()


def test_a_running_sync_is_not_run_twice_and_keeps_its_row_fresh(make_container, share: Path) -> None:  # type: ignore[no-untyped-def]
    from app.services._sync_state import SyncRun
    from core.tables import Job
    from core.tables_connectors import ConnectorSync

    container = make_container(connectors={"filesystem_roots": [str(share)], "scheduler": False})
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        created = conn.create(api, "drive", "filesystem", {"root": str(share)}, acl_default=["tenant:*"])
        sync_id = conn.sync(api, created["id"])["last_sync"]["id"]
        with container.sessions.begin() as s:  # as if another worker were running it right now
            sync = s.get(ConnectorSync, sync_id)
            sync.status, sync.seen = "running", 0
            s.get(Job, sync_id).state = "running"
        _age(container, sync_id, 0)
        container.connector_sync.run(sync_id)  # a redelivered or re-sent copy: refused
        with container.sessions() as s:
            assert (s.get(ConnectorSync, sync_id).status, s.get(ConnectorSync, sync_id).seen) == ("running", 0)

        _age(container, sync_id, 1)  # flushing item rows shows the sync is alive
        container.connector_sync._flush(SyncRun(sync_id), created["id"])
        assert _job_age_s(container, sync_id) < 60

        _age(container, sync_id, 1)  # silent past stale_after_s: its worker is gone, the sync is taken over
        container.connector_sync.run(sync_id)
        assert conn.get(api, created["id"])["last_sync"]["status"] == "succeeded"
