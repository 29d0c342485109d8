"""GET /v1/stats: the dashboard's figures, scoped to what the caller may see."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.services.stats import percentile, run_figures
from orchestration.workflows.store import RunRecord
from tests.app.api import ADMIN


@pytest.mark.unit
def test_percentiles_are_observed_values_and_rates_count_finished_runs_only() -> None:
    assert percentile([], 95) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def run(status: str, seconds: float) -> RunRecord:
        return RunRecord(id=status + str(seconds), tenant_id="t", workflow="w", version=1, status=status,
                         created_at=t0, updated_at=t0 + timedelta(seconds=seconds))  # fmt: skip

    figures = run_figures([run("succeeded", 2), run("failed", 10), run("running", 999), run("succeeded", 4)])
    assert figures["runs"] == {"succeeded": 2, "failed": 1, "running": 1}
    assert figures["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["p95_seconds"] == 10.0  # the running run's 999 s is not a finished duration


@pytest.mark.integration
def test_stats_count_only_what_the_caller_may_see(make_container) -> None:  # type: ignore[no-untyped-def]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(container=make_container())) as client:
        assert client.get("/v1/stats").status_code == 401
        reader = client.post("/v1/keys", headers=admin, json={"user": "rita", "groups": ["sales"]}).json()["key"]
        for title, acl in (("hr-only", ["group:hr"]), ("sales-deck", ["group:sales"])):
            r = client.post(
                "/v1/documents",
                headers=admin,
                files={"file": (f"{title}.txt", f"{title} notes".encode(), "text/plain")},
                data={"metadata": json.dumps({"title": title, "acl": acl})},
            )
            assert r.status_code == 202, r.text
        mine = client.get("/v1/stats", headers={"Authorization": f"Bearer {reader}"}).json()
        everything = client.get("/v1/stats", headers=admin).json()

    assert (mine["scope"], mine["documents"], mine["jobs"], mine["runs"]) == ("own", 1, {}, {})
    assert mine["success_rate"] is None and mine["p95_seconds"] is None and mine["quality"] is None
    assert everything["scope"] == "tenant" and everything["documents"] == 2
    assert sum(everything["jobs"].values()) == 2
    assert everything["thresholds"]["success_rate"] == {"warning": 0.97, "critical": 0.95, "direction": "below"}
    assert everything["thresholds"]["p95_seconds"]["critical"] == 600.0
