"""Server-sent events on the wire: what the answer and chat routes share."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from core.errors import CairnError

log = logging.getLogger(__name__)
MEDIA_TYPE = "text/event-stream"
# proxies (nginx) buffer responses unless told not to; a buffered stream is not a stream
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def wants_stream(request: Request, flag: bool | None) -> bool:
    """`stream: true` in the body, or an `Accept: text/event-stream` header (what browser
    EventSource clients and curl users send) when the body does not say otherwise."""
    if flag is not None:
        return flag
    return MEDIA_TYPE in request.headers.get("accept", "")


def encode(data: Any, event: str | None = None) -> bytes:
    """One event; `data` is JSON on one line (json.dumps escapes newlines), or sent raw when
    it is already a string such as OpenAI's `[DONE]`."""
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), default=str)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {body}\n\n".encode()


def event_stream(events: AsyncIterator[bytes], on_error: Callable[[str, str], bytes]) -> StreamingResponse:
    """Headers are already sent when the body starts, so a failure mid-stream cannot become an
    HTTP status: it ends the stream with one error event (our own message, or a generic one for
    an unexpected exception: its text stays in the server log)."""

    async def guarded() -> AsyncIterator[bytes]:
        try:
            async for chunk in events:
                yield chunk
        except CairnError as exc:
            yield on_error(exc.code, exc.message)
        except Exception:
            log.exception("stream failed")
            yield on_error("internal_error", "internal error; the server log has the details")

    return StreamingResponse(guarded(), media_type=MEDIA_TYPE, headers=HEADERS)
