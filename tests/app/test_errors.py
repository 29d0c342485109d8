"""The HTTP mapping of the answer path's errors, on a tiny app that raises each one."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import errors
from core.errors import CairnError
from orchestration.errors import (
    BudgetExhausted,
    PolicyRefused,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    StreamInterrupted,
    WorkflowSpecError,
)

pytestmark = pytest.mark.unit

CASES: list[tuple[CairnError, int, str, str | None]] = [
    (PolicyRefused("confidential context may not leave", tags=["confidential"]), 403, "policy_refused", None),
    (BudgetExhausted("budget spent", retry_after=3600.0, tenant_id="acme"), 429, "budget_exhausted", "3600"),
    (ProviderRateLimited("slow down", retry_after=2.4), 429, "provider_rate_limited", "2"),
    (ProviderError("no provider could answer", status=500), 503, "provider_error", None),
    (ProviderTimeout("no answer in time"), 503, "provider_timeout", None),
    (StreamInterrupted("the stream broke"), 503, "stream_interrupted", None),
    (WorkflowSpecError("step 'x' refers to unknown step 'y'"), 422, "invalid_workflow", None),
]


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    errors.install(app)

    @app.get("/raise/{i}")
    def boom(i: int) -> None:
        raise CASES[i][0]

    @app.get("/unexpected")
    def unexpected() -> None:
        raise RuntimeError("password=hunter2 in a connection string")

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[2] for c in CASES])
def test_orchestration_errors_map_to_status_and_code(client: TestClient, i: int) -> None:
    exc, status, code, retry_after = CASES[i]
    r = client.get(f"/raise/{i}")
    assert r.status_code == status
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"] == exc.message
    assert r.headers.get("retry-after") == retry_after


def test_unexpected_errors_never_leak_their_text(client: TestClient) -> None:
    r = client.get("/unexpected")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "hunter2" not in r.text
