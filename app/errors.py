"""The only place that knows HTTP status codes for Cairn errors."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import errors as e
from orchestration import errors as oe

log = logging.getLogger(__name__)

STATUS: dict[type[e.CairnError], int] = {
    e.InvalidInput: 422,
    e.UnsupportedMediaType: 415,
    e.PayloadTooLarge: 413,
    e.Unauthenticated: 401,
    e.PermissionDenied: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.RateLimited: 429,
    e.Unavailable: 503,
    e.ParseError: 422,
    e.IndexFailure: 500,
    # the answer path (they subclass the entries above; listed so the mapping reads in one place)
    oe.PolicyRefused: 403,
    oe.BudgetExhausted: 429,
    oe.ProviderRateLimited: 429,
    oe.ProviderError: 503,
    oe.StreamInterrupted: 503,
    oe.WorkflowSpecError: 422,
}


class ErrorDetail(BaseModel):
    code: str  # machine-readable, e.g. invalid_input, not_found, unauthenticated
    message: str  # says what to do
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx body Cairn sends."""

    error: ErrorDetail


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# declared on every operation (the OpenAPI schema is a contract: tests/app/test_openapi_fuzz.py)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("the body could not be read (e.g. not UTF-8); `malformed_body`"),
    401: _documented("missing, unknown, expired or revoked API key"),
    403: _documented("the key's role or the data's policy does not allow this"),
    404: _documented("no such resource, or not visible to this key"),
    409: _documented("conflicts with the current state"),
    413: _documented("the upload is larger than CAIRN_INGESTION__MAX_UPLOAD_BYTES"),
    415: _documented("a file type Cairn cannot index; `details.supported` lists those it can"),
    422: _documented("the request is not valid; `details` says where"),
    429: _documented("rate limit, quota or budget reached; see Retry-After"),
    503: _documented("a dependency (index, model provider, queue) is unavailable; retry later"),
}


def status_for(exc: e.CairnError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return body


def install(app: FastAPI) -> None:
    @app.exception_handler(e.CairnError)
    async def _cairn(_req: Request, exc: e.CairnError) -> JSONResponse:
        status = status_for(exc)
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, e.RateLimited):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        safe = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | bool)}
        return JSONResponse(error_body(exc.code, exc.message, **safe), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": err.get("type")}
            for err in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", "the request is not valid; see details", problems=problems),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "internal error; the server log has the details"), status_code=500
        )
