"""The task wrapper every Celery task shares (retry with backoff, give up with a reason), the
recovery sweep across job kinds, and retrying a failed sync from the API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.dispatch import RecoverySweep
from app.main import create_app
from app.worker import _run
from core.errors import IndexFailure
from core.settings import Settings
from core.tables import Job, utcnow
from tests.app import connector_api as conn
from tests.app.api import Api


class _Retry(Exception):
    def __init__(self, countdown: float) -> None:
        self.countdown = countdown


def _task(retries: int) -> Any:
    settings = Settings(jobs={"max_retries": 3})
    return SimpleNamespace(
        app=SimpleNamespace(conf=SimpleNamespace(cairn_settings=settings)),
        request=SimpleNamespace(retries=retries),
        retry=lambda exc, countdown, max_retries: _Retry(countdown),
    )


def _broken(ids: list[str]) -> None:
    raise IndexFailure("the Qdrant vector index failed to search")


def test_infrastructure_errors_retry_with_growing_backoff() -> None:
    gave_up: list[tuple[list[str], str]] = []
    waits = []
    for retries in range(3):
        with pytest.raises(_Retry) as caught:
            _run(_task(retries), "eval", ["r1"], _broken, lambda ids, why: gave_up.append((ids, why)))
        waits.append(caught.value.countdown)
    assert not gave_up
    assert 0.5 <= waits[0] <= 1.5 and 2.0 <= waits[2] <= 6.0  # 2**n seconds, jittered


def test_exhausted_retries_fail_the_job_with_the_reason() -> None:
    gave_up: list[tuple[list[str], str]] = []
    _run(_task(3), "eval", ["r1"], _broken, lambda ids, why: gave_up.append((ids, why)))
    assert gave_up == [(["r1"], "gave up after 3 retries: the Qdrant vector index failed to search")]


def test_recovery_sweep_covers_every_routed_kind(make_container) -> None:  # type: ignore[no-untyped-def]
    container = make_container()
    old = utcnow() - timedelta(hours=1)
    with container.sessions.begin() as s:
        for job_id, kind, state in (("s1", "sync", "running"), ("e1", "eval", "queued"), ("r1", "reindex", "queued"),
                                    ("i1", "ingest", "parsing"), ("d1", "sync", "succeeded")):
            s.add(Job(id=job_id, tenant_id="default", kind=kind, state=state, updated_at=old))
    sent: list[tuple[str, str]] = []
    routes = {k: (lambda kind: lambda job_id: sent.append((kind, job_id)))(k) for k in ("ingest", "sync", "eval")}
    sweep = RecoverySweep(container.sessions, routes, interval_s=60, stale_after_s=60)
    assert sweep.sweep() == 3
    assert sorted(sent) == [("eval", "e1"), ("ingest", "i1"), ("sync", "s1")]  # reindex: not routed here
    assert sweep.sweep() == 0  # just re-sent: not stale any more


def test_a_failed_sync_is_retried_from_the_api(make_container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.txt").write_text("The cafeteria serves lunch from noon until two.")
    container = make_container(connectors={"filesystem_roots": [str(share)], "scheduler": False})
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        created = conn.create(api, "drive", "filesystem", {"root": str(share)}, acl_default=["tenant:*"])
        job_id = conn.sync(api, created["id"])["last_sync"]["id"]
        container.connector_sync.fail_jobs([job_id], "gave up after 5 retries: a dependency kept failing")
        failed = api.job(job_id)
        assert failed["state"] == "failed" and "gave up" in failed["error"]
        r = client.post(f"/v1/jobs/{job_id}/retry", headers=api.headers)
        assert r.status_code == 202, r.text
        again = _wait(api, job_id)
        assert again["state"] == "succeeded" and again["error"] is None
        assert conn.get(api, created["id"])["last_sync"]["status"] == "succeeded"
        assert client.post(f"/v1/jobs/{job_id}/retry", headers=api.headers).status_code == 409


def _wait(api: Api, job_id: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = api.job(job_id)
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_visibility_timeout_outlasts_every_task_that_could_run_twice() -> None:
    from app.worker import EVAL_TASK, SYNC_TASK, TASK, make_celery

    settings = Settings(redis_url="redis://127.0.0.1:1/0", jobs={"visibility_timeout_s": 3600})
    app = make_celery(settings)
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    for name in (TASK, SYNC_TASK, EVAL_TASK):  # a redelivery while the first copy still runs
        assert visibility > app.tasks[name].time_limit, name


def test_retrying_a_job_whose_record_was_deleted_is_refused(make_container) -> None:  # type: ignore[no-untyped-def]
    from app.jobs import JobRetry
    from core.errors import Conflict
    from core.models import Principal, Role

    container = make_container()
    with container.sessions.begin() as s:  # the connector (and with it the sync row) was deleted
        s.add(Job(id="gone1", tenant_id="default", kind="sync", state="failed", error="boom", created_by="admin"))
    sent: list[str] = []
    retry = JobRetry(container.sessions, lambda p, j: None, {"sync": sent.append}, lambda j: None)
    admin = Principal(tenant_id="default", user="admin", role=Role.admin)
    with pytest.raises(Conflict, match="no longer exists"):
        retry.retry(admin, "gone1")
    assert sent == []
    with container.sessions() as s:
        assert s.get(Job, "gone1").state == "failed"  # not left queued forever
