"""Job ETA: `progress`, `done`/`total` and `eta_s` on job reads and listings, estimated from
observed throughput and queue position; null when nothing has been observed yet."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.job_eta import Sample, throughput
from app.main import create_app
from tests.app.api import Api


def test_throughput_counts_busy_time_once_and_ignores_idle_gaps() -> None:
    now = 1000.0
    assert throughput([], now) is None
    assert throughput([Sample(1, 990, 2)], now) is None  # one job is not a rate
    # two workers busy over the same 10 s did 20 jobs: 2 jobs/s, not 1
    assert throughput([Sample(10, 980, 10), Sample(10, 980, 10)], now) == pytest.approx(2.0)
    # an idle minute between two batches does not lower it
    assert throughput([Sample(5, 800, 5), Sample(5, 900, 5)], now) == pytest.approx(1.0)
    assert throughput([Sample(5, 10, 5)], now) is None  # older than the window


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
