"""Celery mode against a real Redis server: killed workers, Redis outages, backpressure.

Each test runs its own `redis-server` on a free port (the same binary as the machine's Redis),
so stopping it never disturbs anything else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.models import AccessScope, Principal, Role
from tests.app.api import Api
from tests.app.conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ADMIN = Principal(tenant_id="default", user="admin", role=Role.admin)


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed; the machine's Redis package provides it"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker{len(procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env={**os.environ, **env},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _env(data_dir: Path, redis_url: str) -> dict[str, str]:
    return {"CAIRN_DATA_DIR": str(data_dir), "CAIRN_REDIS_URL": redis_url, "CAIRN_JOBS__MAX_RETRIES": "3"}


def _text(i: int) -> str:
    return " ".join(f"Section {s} of handbook page {i}: refunds, invoices and shipping rules apply." for s in range(70))


def _wait_states(api: Api, job_ids: list[str], done: Callable[[list[str]], bool], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        states = [api.job(j)["state"] for j in job_ids]
        if done(states) or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


def test_killed_worker_loses_nothing_and_duplicates_nothing(make_container, redis_server, start_worker, tmp_path):  # type: ignore[no-untyped-def]
    data = tmp_path / "var"
    container = make_container(
        data, redis_url=redis_server.url, jobs={"visibility_timeout_s": 8, "stale_after_s": 30, "sweep_interval_s": 5}
    )
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        first = start_worker(_env(data, redis_server.url))
        jobs = [api.upload(f"p{i}.txt", _text(i).encode(), {"doc_id": f"p{i}", "acl": ["tenant:*"]}).json()["job_id"]
                for i in range(12)]
        states = _wait_states(api, jobs, lambda st: st.count("indexed") >= 2, 180)
        assert states.count("indexed") >= 2, f"the first worker indexed nothing: {states}"
        os.killpg(first.pid, signal.SIGKILL)  # mid-batch: some jobs done, some not
        first.wait(10)
        start_worker(_env(data, redis_server.url))
        states = _wait_states(api, jobs, lambda st: all(s == "indexed" for s in st), 240)
        assert states == ["indexed"] * 12, states

        scope = AccessScope.of(ADMIN)
        for i in range(12):
            parsed = container.pipeline.parse_and_chunk(_item(container, f"p{i}.txt", _text(i)))
            chunks = container.index.chunks_of(scope, f"p{i}")
            assert [c.payload["chunk_index"] for c in chunks] == list(range(len(parsed.chunks))), f"p{i}"
            assert {c.payload["version"] for c in chunks} == {1}


def _item(container, name: str, text: str):  # type: ignore[no-untyped-def]
    from core.models import DocumentMetadata
    from ingestion.pipeline import VersionInput, VersionRef

    return VersionInput(VersionRef("default", "x", 1, ""), text.encode(), name, "text/plain", DocumentMetadata(), [])


def test_redis_outage_refuses_clearly_and_accepted_jobs_complete(make_container, redis_server, start_worker, tmp_path):  # type: ignore[no-untyped-def]
    data = tmp_path / "var"
    container = make_container(
        data, redis_url=redis_server.url, jobs={"stale_after_s": 3, "sweep_interval_s": 1}
    )
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        accepted = [api.upload(f"a{i}.txt", _text(i).encode(), {"acl": ["tenant:*"]}) for i in range(4)]
        assert all(r.status_code == 202 for r in accepted)
        redis_server.stop()  # before any worker ran: the broker's copy of those jobs is gone for good
        refused = api.upload("late.txt", b"uploaded while Redis is down", {"acl": ["tenant:*"]})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "queue_unavailable"
        redis_server.start()  # empty: Redis here keeps nothing on disk
        start_worker(_env(data, redis_server.url))
        jobs = [r.json()["job_id"] for r in accepted]
        states = _wait_states(api, jobs, lambda st: all(s == "indexed" for s in st), 240)
        assert states == ["indexed"] * 4
        listed = client.get("/v1/documents", headers=api.headers).json()
        assert listed["count"] == 4  # the refused upload was never stored


def test_backpressure_refuses_with_retry_after(make_container, redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    container = make_container(tmp_path / "var", redis_url=redis_server.url, jobs={"max_queue_depth": 2})
    with TestClient(create_app(container=container)) as client:
        api = Api(client)  # no worker runs: the queue only grows
        codes = [api.upload(f"b{i}.txt", f"document number {i}".encode(), {"title": "b"}).status_code for i in range(3)]
        assert codes == [202, 202, 429]
        r = api.upload("b9.txt", b"one more", {"title": "b"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert r.json()["error"]["code"] == "rate_limited"


def test_failed_job_can_be_retried(make_container) -> None:  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        broken = b"%PDF-1.7\n" + b"\x00junk" * 50
        job = api.upload("broken.pdf", broken, {"title": "x"}, "application/pdf").json()["job_id"]
        first = api.wait(job)
        assert first["state"] == "failed"
        r = client.post(f"/v1/jobs/{job}/retry", headers=api.headers)
        assert r.status_code == 202 and r.json()["id"] == job
        again = api.wait(job)  # the worker may already be on it: wait, then compare
        assert again["state"] == "failed" and again["error"]  # still broken, and it says why again
        assert again["finished_at"] > first["finished_at"]  # it really ran a second time
        good = api.ingest("fine.txt", "a healthy document", acl=["tenant:*"])
        assert client.post(f"/v1/jobs/{good['job_id']}/retry", headers=api.headers).status_code == 409
        listed = client.get("/v1/jobs?state=failed", headers=api.headers).json()
        assert [j["id"] for j in listed["data"]] == [job]


def test_connector_sync_runs_on_a_worker_and_its_documents_become_searchable(  # type: ignore[no-untyped-def]
    make_container, redis_server, start_worker, tmp_path
):
    import json

    from tests.app import connector_api as conn

    share = tmp_path / "share"
    share.mkdir()
    (share / "refunds.txt").write_text("Refunds are paid to the original card within five working days.")
    (share / "vpn.txt").write_text("Connect to the VPN client before opening the intranet.")
    (share / "parking.txt").write_text("Parking permits are issued by reception on the ground floor.")
    data = tmp_path / "var"
    roots = {"filesystem_roots": [str(share)], "scheduler": False}
    container = make_container(data, redis_url=redis_server.url, connectors=roots)
    env = {**_env(data, redis_server.url), "CAIRN_CONNECTORS__FILESYSTEM_ROOTS": json.dumps([str(share)])}
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        start_worker(env)
        created = conn.create(api, "drive", "filesystem", {"root": str(share)}, acl_default=["tenant:*"])
        first = conn.sync(api, created["id"], timeout=240)["last_sync"]
        assert (first["status"], first["seen"], first["indexed"]) == ("succeeded", 3, 3), first
        assert "refunds.txt" in conn.titles(api.search("when are refunds paid"))
        (share / "vpn.txt").unlink()  # the worker deletes it; the API (index owner) drops its chunks
        second = conn.sync(api, created["id"], timeout=240)["last_sync"]
        assert (second["status"], second["deleted"]) == ("succeeded", 1), second
        deadline = time.monotonic() + 30
        while "vpn.txt" in conn.titles(api.search("connect to the VPN client")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "vpn.txt" not in conn.titles(api.search("connect to the VPN client"))
        unindex = client.get("/v1/jobs?kind=unindex", headers=api.headers).json()["data"]
        assert [j["state"] for j in unindex] == ["succeeded"]
    log = (tmp_path / "worker0.log").read_text()
    assert "cairn.sync" in log and "succeeded" in log  # it ran on the worker, not in the API process
    assert container.sync_runner.depth() == 0
