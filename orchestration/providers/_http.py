"""What the HTTP providers share: one place that turns httpx failures, HTTP statuses and broken
bodies into orchestration errors (so the gateway reasons about one error tree), Retry-After
parsing, and a server-sent-events reader that notices a stream cut off mid-way."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from orchestration.errors import ProviderError, ProviderRateLimited, ProviderTimeout

RETRYABLE_STATUS = frozenset({408, 409, 425, 500, 502, 503, 504, 529})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def check_response(resp: httpx.Response, provider: str) -> None:
    if resp.status_code < 400:
        return
    if resp.status_code == 429:
        wait = parse_retry_after(resp.headers.get("retry-after"))
        raise ProviderRateLimited(
            f"{provider} is rate limiting requests",
            retry_after=wait if wait is not None else 1.0,
            provider=provider,
        )
    retryable = resp.status_code in RETRYABLE_STATUS
    raise ProviderError(
        f"{provider} answered HTTP {resp.status_code}",
        retryable=retryable,
        provider=provider,
        status=resp.status_code,
    )


@contextmanager
def map_errors(provider: str) -> Iterator[None]:
    """httpx -> orchestration errors at the seam (after httpx's own `_exceptions` mapping)."""
    try:
        yield
    except httpx.TimeoutException:
        raise ProviderTimeout(f"{provider} did not answer in time", provider=provider) from None
    except httpx.TransportError as exc:
        raise ProviderError(
            f"could not talk to {provider} ({type(exc).__name__})", provider=provider
        ) from None


def parse_json(resp: httpx.Response, provider: str) -> dict[str, Any]:
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderError(f"{provider} returned a body that is not JSON", provider=provider) from None
    if not isinstance(body, dict):
        raise ProviderError(f"{provider} returned JSON that is not an object", provider=provider)
    return body


async def sse_events(resp: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs per the SSE spec: `data:` lines joined, dispatched on a blank line."""
    event, data = "message", list[str]()
    async for line in resp.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    if data:
        yield event, "\n".join(data)


def load_event(data: str, provider: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        raise ProviderError(f"{provider} sent a malformed stream event", provider=provider) from None
    if not isinstance(obj, dict):
        raise ProviderError(f"{provider} sent a stream event that is not an object", provider=provider)
    return obj
