"""Request rate limits and quotas, checked for every authenticated request.

Three counters, each off unless configured (`CAIRN_LIMITS__*`): requests per key per minute,
per tenant per minute, and per tenant per UTC day. A minute window starts at its first request
and lasts 60 s; the daily quota resets at midnight UTC. A refused request does not count.

With `CAIRN_REDIS_URL` the counters live in Redis and are shared by every API replica: one Lua
script checks and increments all of a request's counters atomically (one round trip). Without
Redis they live in this process (thread-safe). When Redis cannot be reached the limiter fails
open: requests pass, a warning is logged once per outage, and Redis is tried again after a few
seconds. Limits must never take the API down.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.errors import RateLimited
from core.models import Principal
from core.settings import LimitsSettings

log = logging.getLogger(__name__)
MINUTE_MS = 60_000
REDIS_RETRY_S = 5.0
_PREFIX = "cairn:rl:"


class QuotaExceeded(RateLimited):
    code = "quota_exceeded"


@dataclass(frozen=True)
class Counter:
    key: str
    limit: int
    window_ms: int
    daily: bool = False


def counters(principal: Principal, limits: LimitsSettings, now: datetime | None = None) -> list[Counter]:
    """The counters one request of `principal` increments (only the configured ones)."""
    now = now or datetime.now(UTC)
    out: list[Counter] = []
    if limits.per_key_per_minute:
        out.append(Counter(f"key:{principal.key_id}", limits.per_key_per_minute, MINUTE_MS))
    if limits.per_tenant_per_minute:
        out.append(Counter(f"tenant:{principal.tenant_id}", limits.per_tenant_per_minute, MINUTE_MS))
    if limits.per_tenant_per_day:
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        left_ms = max(1, int((midnight - now).total_seconds() * 1000))
        out.append(Counter(f"day:{principal.tenant_id}:{now:%Y%m%d}", limits.per_tenant_per_day, left_ms, True))
    return out


def refusal(counter: Counter, retry_after_ms: int) -> RateLimited:
    retry = max(1.0, retry_after_ms / 1000)
    if counter.daily:
        return QuotaExceeded(
            f"the tenant's daily quota of {counter.limit} requests is used up; it resets at midnight UTC",
            retry_after=retry, limit=counter.limit,
        )
    scope = "key" if counter.key.startswith("key:") else "tenant"
    return RateLimited(
        f"more than {counter.limit} requests per minute for this {scope}; retry after the Retry-After seconds",
        retry_after=retry, limit=counter.limit,
    )


class Limiter(Protocol):
    def check(self, principal: Principal) -> None: ...


class LocalLimiter:
    """In-process counters (the embedded default, one API process)."""

    def __init__(self, limits: LimitsSettings) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (count, ends at, monotonic s)

    def check(self, principal: Principal) -> None:
        wanted = counters(principal, self.limits)
        if not wanted:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._windows) > 10_000:
                self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
            current = {c.key: self._current(c.key, now) for c in wanted}
            for c in wanted:
                count, ends = current[c.key]
                if count >= c.limit:
                    raise refusal(c, int((ends - now) * 1000))
            for c in wanted:
                count, ends = current[c.key]
                self._windows[c.key] = (count + 1, ends if count else now + c.window_ms / 1000)

    def _current(self, key: str, now: float) -> tuple[int, float]:
        count, ends = self._windows.get(key, (0, 0.0))
        return (count, ends) if ends > now else (0, 0.0)


# KEYS: the counters; ARGV: limit, window_ms for each. Refuses (returning the index of the full
# counter and its remaining ms) before incrementing anything, so a refused request costs nothing.
_SCRIPT = """
for i = 1, #KEYS do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
      ttl = tonumber(ARGV[2 * i])
    end
    return {i, ttl}
  end
end
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
end
return {0, 0}
"""


class RedisLimiter:
    """Counters in Redis, shared by all API replicas. Fails open when Redis is unreachable."""

    def __init__(self, limits: LimitsSettings, client: Any) -> None:
        self.limits = limits
        self._client = client
        self._script = client.register_script(_SCRIPT)
        self._down_until = 0.0
        self._warned = False

    def check(self, principal: Principal) -> None:
        import redis

        wanted = counters(principal, self.limits)
        if not wanted or time.monotonic() < self._down_until:
            return
        args: list[int] = []
        for c in wanted:
            args += [c.limit, c.window_ms]
        try:
            index, ttl = self._script(keys=[_PREFIX + c.key for c in wanted], args=args)
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + REDIS_RETRY_S
            if not self._warned:
                self._warned = True
                log.warning("rate limits are NOT enforced: Redis is unreachable (%s); retrying every %.0f s",
                            type(exc).__name__, REDIS_RETRY_S)
            return
        if self._warned:
            self._warned = False
            log.warning("Redis is reachable again; rate limits are enforced")
        if index:
            raise refusal(wanted[int(index) - 1], int(ttl))


def build_limiter(limits: LimitsSettings, redis_url: str | None) -> Limiter:
    if not redis_url:
        return LocalLimiter(limits)
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return RedisLimiter(limits, client)
