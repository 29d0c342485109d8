"""Connector calls the way a user's script makes them, on top of tests.app.api.Api."""

from __future__ import annotations

import time
from typing import Any

from tests.app.api import Api


def create(api: Api, name: str, kind: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    r = api.client.post("/v1/connectors", headers=api.headers, json={"name": name, "kind": kind, "config": config,
                                                                      **extra})
    assert r.status_code == 201, r.text
    return r.json()


def get(api: Api, connector_id: str) -> dict[str, Any]:
    r = api.client.get(f"/v1/connectors/{connector_id}", headers=api.headers)
    assert r.status_code == 200, r.text
    return r.json()


def sync(api: Api, connector_id: str, timeout: float = 300, **body: Any) -> dict[str, Any]:
    """Starts a sync, waits for its job, returns the connector as GET shows it afterwards."""
    r = api.client.post(f"/v1/connectors/{connector_id}/sync", headers=api.headers, json=body or None)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.job(job_id)
        if job["state"] in ("succeeded", "failed"):
            assert job["kind"] == "sync"
            connector = get(api, connector_id)
            assert connector["last_sync"]["id"] == job_id
            return connector
        time.sleep(0.05)
    raise AssertionError(f"sync {job_id} did not finish")


def reconcile(api: Api, connector_id: str) -> dict[str, Any]:
    r = api.client.get(f"/v1/connectors/{connector_id}/reconcile", headers=api.headers)
    assert r.status_code == 200, r.text
    return r.json()


def titles(results: list[dict[str, Any]]) -> set[str]:
    return {r["title"] for r in results}
