"""Rate limits and quotas: in-process (embedded default), and shared through a real Redis by two
real API server processes; Redis going away does not take the API down."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app import ratelimit
from app.main import create_app
from app.ratelimit import LocalLimiter
from core.errors import RateLimited
from core.models import Principal, Role
from core.settings import LimitsSettings
from tests.app.api import ADMIN, Api
from tests.app.conftest import free_port
from tests.app.test_celery_jobs import redis_server  # noqa: F401  (fixture)
from tests.app.test_postgres import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api_with(make_container) -> Iterator[Callable[..., Api]]:  # type: ignore[no-untyped-def]
    clients: list[TestClient] = []

    def start(**limits: int) -> Api:
        container = make_container(limits=LimitsSettings(**limits))
        client = TestClient(create_app(container=container))
        client.__enter__()
        clients.append(client)
        return Api(client)

    yield start
    for c in clients:
        c.__exit__(None, None, None)


def _get(api: Api) -> Any:
    return api.client.get("/v1/me", headers=api.headers)


def test_per_key_limit_refuses_with_retry_after(api_with) -> None:  # type: ignore[no-untyped-def]
    api = api_with(per_key_per_minute=3)
    alice = api.new_key("alice")  # the admin's first request
    assert [_get(alice).status_code for _ in range(3)] == [200, 200, 200]
    r = _get(alice)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert _get(api.new_key("bob")).status_code == 200  # another key has its own budget
    assert [_get(api).status_code for _ in range(2)] == [200, 429]  # the admin's: new_key twice, then this
    bad = api.client.get("/v1/me", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401  # unauthenticated requests are refused before any counting


def test_per_tenant_limit_is_shared_by_the_tenants_keys_only(api_with) -> None:  # type: ignore[no-untyped-def]
    api = api_with(per_tenant_per_minute=4)
    container = api.client.app.state.container  # type: ignore[attr-defined]
    _, a = container.keys.create("default", "ann", [], Role.reader)
    _, b = container.keys.create("default", "ben", [], Role.reader)
    _, other = container.keys.create("tenant-b", "oz", [], Role.reader)
    codes = [_get(api.as_key(k)).status_code for k in (a, b, a, b, a, b)]
    assert codes == [200, 200, 200, 200, 429, 429]
    assert _get(api).status_code == 429
    assert [_get(api.as_key(other)).status_code for _ in range(4)] == [200] * 4


def test_daily_quota_answers_quota_exceeded_until_midnight_utc(api_with) -> None:  # type: ignore[no-untyped-def]
    api = api_with(per_tenant_per_day=2)
    assert [_get(api).status_code for _ in range(2)] == [200, 200]
    r = _get(api)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    assert abs(int(r.headers["Retry-After"]) - (midnight - now).total_seconds()) < 5


def test_a_minute_window_ends_and_refused_requests_do_not_count(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock[0])
    limiter = LocalLimiter(LimitsSettings(per_key_per_minute=2, per_tenant_per_day=3))
    who = Principal(tenant_id="t", user="u", role=Role.reader, key_id="k")
    limiter.check(who)
    limiter.check(who)
    for _ in range(5):
        with pytest.raises(RateLimited) as refused:
            limiter.check(who)
        assert refused.value.code == "rate_limited" and 1 <= refused.value.retry_after <= 60
    clock[0] += 60.5
    limiter.check(who)  # a new minute; the day has one request left: refusals cost nothing
    clock[0] += 61
    with pytest.raises(RateLimited) as quota:
        limiter.check(who)
    assert quota.value.code == "quota_exceeded"


def test_in_process_limiter_is_exact_under_threads() -> None:
    limiter = LocalLimiter(LimitsSettings(per_key_per_minute=50))
    who = Principal(tenant_id="t", user="u", role=Role.reader, key_id="k")
    passed = []

    def hammer() -> None:
        for _ in range(20):
            try:
                limiter.check(who)
                passed.append(1)
            except RateLimited:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) == 50


@pytest.fixture
def server_procs(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], str]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> str:
        port = free_port()
        n = len(procs)
        log = (tmp_path / f"server{n}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT, env={**os.environ, **env, "CAIRN_DATA_DIR": str(tmp_path / f"var{n}")},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / f"server{n}.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError("the API server did not start")

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)


def test_two_api_processes_share_one_limit_through_redis(redis_server, server_procs, pg_url: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Two real API processes (one shared PostgreSQL, one private redis-server): a key limited to
    10 requests a minute gets exactly 10 through, whichever replica it calls."""
    env = {
        "CAIRN_ADMIN_KEY": ADMIN, "CAIRN_DATABASE_URL": pg_url, "CAIRN_REDIS_URL": redis_server.url,
        "CAIRN_LIMITS__PER_KEY_PER_MINUTE": "10", "CAIRN_CONNECTORS__SCHEDULER": "false",
    }
    first = server_procs(env)
    second = server_procs(env)  # after the first: it finds the schema migrated and the key present
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda url: httpx.get(f"{url}/v1/me", headers=headers, timeout=30),
                                  [first, second] * 6))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 10 and codes.count(429) == 2, codes
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(r.headers["Retry-After"]) <= 60
    for replica in (codes[0::2], codes[1::2]):
        assert replica.count(200) >= 4  # both replicas served, and counted into the same limit


def test_redis_outage_fails_open_with_a_warning(make_container, redis_server, caplog) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    container = make_container(redis_url=redis_server.url, limits=LimitsSettings(per_key_per_minute=2))
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        assert [_get(api).status_code for _ in range(3)] == [200, 200, 429]
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="app.ratelimit"):
            assert [_get(api).status_code for _ in range(4)] == [200] * 4  # not enforced, not down
        warnings = [r for r in caplog.records if r.name == "app.ratelimit"]
        assert len(warnings) == 1 and "NOT enforced" in warnings[0].getMessage()
        redis_server.start()  # empty again (nothing persisted)
        time.sleep(ratelimit.REDIS_RETRY_S + 0.2)
        assert [_get(api).status_code for _ in range(3)] == [200, 200, 429]
