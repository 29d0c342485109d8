"""Snapshot and restore of the embedded default, end to end: what was searchable at snapshot time
is searchable again after a restore, and a running server is never copied from under it."""

from __future__ import annotations

import shutil
import time

import pytest
from fastapi.testclient import TestClient

from app import snapshots
from app.cli import main
from app.main import create_app
from core.errors import Conflict
from core.settings import Settings, get_settings
from tests.app.api import Api

pytestmark = pytest.mark.integration


def test_snapshot_restore_round_trip(tmp_path, make_container, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "var"
    settings = Settings(data_dir=data_dir, admin_key="test-admin-key")
    c = make_container(data_dir=data_dir)
    with TestClient(create_app(container=c)) as client:
        Api(client).ingest("keep.txt", "The lighthouse keeper logs every passing ship.", doc_id="keep")
        with pytest.raises(Conflict, match="stop the server"):
            snapshots.create(settings, "while-running")
    c.close()

    monkeypatch.setenv("CAIRN_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        assert main(["snapshot", "create", "--name", "s1"]) == 0
        assert main(["snapshot", "list"]) == 0
        assert "s1\t" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()

    c = make_container(data_dir=data_dir)
    with TestClient(create_app(container=c)) as client:
        api = Api(client)
        assert client.delete("/v1/documents/keep", headers=api.headers).status_code == 204
        api.ingest("new.txt", "Harbour pilots guide container ships into port.", doc_id="new")
    c.close()

    info = snapshots.restore(settings, "s1")
    assert info.documents == 1
    assert any(p.name.startswith("before-restore-") for p in (data_dir / "snapshots").iterdir())
    c = make_container(data_dir=data_dir)
    with TestClient(create_app(container=c)) as client:
        api = Api(client)
        docs = client.get("/v1/documents", headers=api.headers).json()["data"]
        assert [d["document_id"] for d in docs] == ["keep"]
        assert [h["doc_id"] for h in api.search("lighthouse keeper")] == ["keep"]
        assert api.search("harbour pilots container ships") == [] or all(
            h["doc_id"] == "keep" for h in api.search("harbour pilots container ships")
        )


def test_snapshot_after_a_reindex_carries_the_serving_generation(tmp_path, make_container) -> None:  # type: ignore[no-untyped-def]
    """After a reindex swap the live index is `index-g2`: a snapshot must hold it, and a restore
    must serve it again (not the pre-reindex directory)."""
    data_dir = tmp_path / "var"
    settings = Settings(data_dir=data_dir, admin_key="test-admin-key")
    c = make_container(data_dir=data_dir)
    with TestClient(create_app(container=c)) as client:
        api = Api(client)
        api.ingest("keep.txt", "The lighthouse keeper logs every passing ship.", doc_id="keep")
        job_id = client.post("/v1/admin/reindex", headers=api.headers).json()["id"]
        for _ in range(1200):
            job = client.get(f"/v1/jobs/{job_id}", headers=api.headers).json()
            if job["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        assert job["state"] == "succeeded", job
        api.ingest("late.txt", "Tide tables are printed every spring for the harbour.", doc_id="late")
    c.close()
    assert (data_dir / "index-g2").is_dir()

    info = snapshots.create(settings, "after-reindex")
    assert info.documents == 2
    shutil.rmtree(data_dir / "index-g2")  # lost after the snapshot: the restore must bring it back
    snapshots.restore(settings, "after-reindex")
    assert (data_dir / "index-g2").is_dir()
    c = make_container(data_dir=data_dir)
    with TestClient(create_app(container=c)) as client:
        api = Api(client)
        assert [h["doc_id"] for h in api.search("tide tables harbour spring")][:1] == ["late"]
        assert [h["doc_id"] for h in api.search("lighthouse keeper")][:1] == ["keep"]
    c.close()
