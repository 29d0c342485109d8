"""Upload size limit enforced on the wire, before the multipart body is parsed.

FastAPI parses (and spools to disk) a whole multipart body before a route runs, so a check in the
route comes after a 10 GB upload was already received. This middleware refuses a declared
`Content-Length` above the limit at once, and stops a chunked body as soon as it passes the limit.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body

# path -> how many files of `max_upload_bytes` its form may carry (a BEIR dataset upload holds
# corpus, queries and qrels: MAX_DATASET_FILES files, each checked against the limit by the route)
UPLOAD_PATHS = {"/v1/documents": 1, "/v1/eval-datasets": 4}
FORM_SLACK = 64 * 1024  # multipart boundaries and the metadata field ride along with the file


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the upload is larger than the {limit} byte limit")


class UploadSizeLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        files = UPLOAD_PATHS.get(scope["path"].rstrip("/"), 0) if scope["type"] == "http" else 0
        if not files or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        container = getattr(scope["app"].state, "container", None)
        if container is None:
            await self.app(scope, receive, send)
            return
        per_file: int = container.settings.ingestion.max_upload_bytes
        limit = per_file * files
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit + FORM_SLACK:
            body = error_body("payload_too_large", f"the upload is larger than the {limit} byte limit", limit=limit)
            await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit + FORM_SLACK:
                    raise UploadTooLarge(limit)  # FastAPI lets HTTPExceptions from body parsing through
            return message

        await self.app(scope, counted, send)
