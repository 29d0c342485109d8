"""Job ETA: `progress`, `done`/`total` and `eta_s` on job reads and listings, estimated from
observed throughput and queue position; null when nothing has been observed yet."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from app.job_eta import Batch, MemoryThroughput, Sample, _eta, done_in_flight, throughput
from app.jobs import ThreadJobRunner
from app.main import create_app
from tests.app.api import Api
from tests.app.test_celery_jobs import redis_server  # noqa: F401  (fixture)


def test_throughput_counts_busy_time_once_and_ignores_idle_gaps() -> None:
    now = 1000.0
    assert throughput([], now) is None
    assert throughput([Sample(1, 990, 2)], now) is None  # one job is not a rate
    # two workers busy over the same 10 s did 20 jobs: 2 jobs/s, not 1
    assert throughput([Sample(10, 980, 10), Sample(10, 980, 10)], now) == pytest.approx(2.0)
    # an idle minute between two batches does not lower it
    assert throughput([Sample(5, 800, 5), Sample(5, 900, 5)], now) == pytest.approx(1.0)
    assert throughput([Sample(5, 10, 5)], now) is None  # older than the window


def test_running_batches_count_down_the_eta_instead_of_freezing_it() -> None:
    now = 1000.0
    # 2 jobs/s; 40 queued up to ours, a batch of 30 of them running for 5 s: ~10 done
    assert done_in_flight([Batch("ingest", "a", 30, 995.0)], 2.0, now) == pytest.approx(10.0)
    assert _eta(40, 10.0, 2.0) == pytest.approx(15.0)
    assert _eta(40, done_in_flight([Batch("ingest", "a", 30, 990.0)], 2.0, now), 2.0) == pytest.approx(10.0)
    # a batch can do no more than its size, and an overdue one leaves a little, never zero
    assert done_in_flight([Batch("ingest", "a", 30, 900.0)], 2.0, now) == 30.0
    assert _eta(30, 30.0, 2.0) == pytest.approx(0.2)
    # two workers' batches run together: their union, not the sum, of running time
    both = [Batch("ingest", "a", 10, 996.0), Batch("ingest", "b", 10, 998.0)]
    assert done_in_flight(both, 2.0, now) == pytest.approx(8.0)
    # nothing observed, or a dead worker's leftover from long ago: nothing is counted done
    assert done_in_flight([Batch("ingest", "a", 30, 995.0)], None, now) == 0.0
    assert done_in_flight([Batch("ingest", "a", 30, 10.0)], 2.0, now) == 0.0
    assert _eta(5, 0.0, None) is None


def test_the_job_runner_announces_each_batch_and_samples_only_completed_ones() -> None:
    log, release = MemoryThroughput(), threading.Event()

    def run(ids: list[str]) -> None:
        release.wait(10)
        if "bad" in ids:
            raise RuntimeError("crash")

    runner = ThreadJobRunner(run, throughput=log)
    runner.start()
    for job in ("j1", "j2", "j3"):
        runner.enqueue(job)
    deadline = time.monotonic() + 5
    while not log.running("ingest") and time.monotonic() < deadline:
        time.sleep(0.01)
    (batch,) = log.running("ingest")
    assert 1 <= batch.jobs <= 3 and log.samples("ingest") == []
    release.set()
    assert runner.wait_idle(10)
    assert log.running("ingest") == [] and sum(s.jobs for s in log.samples("ingest")) == 3
    runner.enqueue("bad")
    assert runner.wait_idle(10)
    assert log.running("ingest") == [] and sum(s.jobs for s in log.samples("ingest")) == 3
    runner.shutdown()


def _text(i: int) -> str:
    return " ".join(f"Paragraph {s} of memo {i}: travel expenses, receipts and approvals." for s in range(60))


@pytest.mark.integration
def test_eta_is_present_plausible_and_decreases(make_container) -> None:  # type: ignore[no-untyped-def]
    container = make_container()
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        first = api.upload("m0.txt", _text(0).encode(), {"acl": ["tenant:*"]}).json()["job_id"]
        assert api.job(first)["eta_s"] is None or api.job(first)["state"] != "queued"  # nothing observed yet
        for i in range(1, 6):  # warm-up: the runner observes some throughput
            api.ingest(f"w{i}.txt", _text(i), acl=["tenant:*"])
        api.wait(first)
        jobs = [api.upload(f"m{i}.txt", _text(100 + i).encode(), {"acl": ["tenant:*"]}).json()["job_id"]
                for i in range(40)]
        last = jobs[-1]
        seen: list[tuple[float, float]] = []
        while True:
            body = api.job(last)
            if body["state"] == "indexed":
                finished = time.monotonic()
                assert body["eta_s"] == 0.0 and body["progress"] == 1.0
                break
            if body["eta_s"] is not None:
                seen.append((time.monotonic(), body["eta_s"]))
            time.sleep(0.1)
        assert len(seen) >= 3, seen
        (t0, first_eta), (_t1, last_eta) = seen[0], seen[-1]
        actual = finished - t0
        assert 0.2 * actual <= first_eta <= 5 * actual + 2, (first_eta, actual)  # plausible
        assert last_eta < first_eta, seen  # it goes down as the queue drains
        listed = client.get("/v1/jobs?kind=ingest&limit=5", headers=api.headers).json()["data"]
        assert all({"progress", "eta_s", "done", "total"} <= set(j) for j in listed)


@pytest.mark.integration
def test_workers_share_running_batches_and_samples_through_redis(redis_server) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    import redis

    from app.job_eta import RedisThroughput

    worker, api = (RedisThroughput(redis.Redis.from_url(redis_server.url)) for _ in range(2))
    done, failed = worker.begin("ingest", 12), worker.begin("ingest", 3)
    assert sorted(b.jobs for b in api.running("ingest")) == [3, 12]
    assert api.running("sync") == [] and api.samples("ingest") == []
    worker.end(done)
    worker.end(failed, ok=False)  # a crashed batch is no sample of throughput
    assert api.running("ingest") == []
    (sample,) = api.samples("ingest")
    assert sample.jobs == 12 and 0 <= sample.seconds < 5


class FixedLog:
    """A ThroughputLog with given samples and running batches."""

    def __init__(self, samples: list[Sample]) -> None:
        self.fixed, self.batches = samples, list[Batch]()

    def begin(self, kind: str, jobs: int) -> Batch:
        raise AssertionError("read-only")

    def end(self, batch: Batch, ok: bool = True) -> None:
        raise AssertionError("read-only")

    def samples(self, kind: str) -> list[Sample]:
        return self.fixed if kind == "ingest" else []

    def running(self, kind: str) -> list[Batch]:
        return self.batches if kind == "ingest" else []


def test_a_sync_shows_the_eta_of_its_last_pending_ingest_job(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from app.db import make_engine, make_session_factory, migrate
    from app.job_eta import JobEta
    from core.tables import Job
    from core.tables_connectors import ConnectorItem, ConnectorRow, ConnectorSync

    engine = make_engine(f"sqlite:///{tmp_path / 'eta.db'}")
    migrate(engine)
    sessions = make_session_factory(engine)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    log = FixedLog([Sample(10, time.time() - 20, 5.0)])  # 2 jobs per busy second
    with sessions.begin() as s:
        s.add(ConnectorRow(id="c1", tenant_id="t", name="drive", kind="fs", owner="u", owner_role="admin"))
        s.flush()
        s.add(ConnectorSync(id="s1", connector_id="c1", tenant_id="t", status="running", seen=12, indexed=8))
        s.add(Job(id="s1", tenant_id="t", kind="sync", state="running", progress=0.6, created_at=t0))
        for i in range(6):  # six ingest jobs queued; the sync's items are the 3rd and the 5th
            s.add(Job(id=f"j{i}", tenant_id="t", kind="ingest", state="queued", created_at=t0 + timedelta(seconds=i)))
        for i in (2, 4):
            s.add(ConnectorItem(connector_id="c1", external_id=f"f{i}", doc_id=f"d{i}", job_id=f"j{i}"))  # pending
    with sessions() as s:
        jobs = {j.id: j for j in s.query(Job).all()}
        eta = JobEta(log).for_jobs(s, list(jobs.values()))
        assert eta["j4"].eta_s == pytest.approx(2.5)  # 5 jobs up to it at 2 jobs/s
        assert eta["s1"].eta_s == eta["j4"].eta_s and (eta["s1"].done, eta["s1"].total) == (8, 12)
        log.batches = [Batch("ingest", "b", 3, time.time() - 0.2)]  # a batch of three has just started
        running = JobEta(log).for_jobs(s, list(jobs.values()))
        assert running["s1"].eta_s == running["j4"].eta_s and 2.0 <= running["s1"].eta_s <= 2.5
