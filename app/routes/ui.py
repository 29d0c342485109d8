"""The web UI (static files in `app/ui/`, no build step) and `GET /v1/me`, which it signs in with.

The UI is plain HTML/JS that calls the same API with the user's key, so every permission it
shows is enforced by the server. Files are served from a fixed list rather than a directory
mount: nothing else under `app/` can be fetched, and each response carries a strict CSP
(no inline script, nothing from other origins).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel

from app.deps import ContainerDep, PrincipalDep
from app.services.stats import Stats, compute
from core.errors import NotFound
from core.models import Role

router = APIRouter(tags=["ui"])

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "lib.js": "text/javascript; charset=utf-8",
    "desk.js": "text/javascript; charset=utf-8",
    "evals.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # revalidate every load (ETag / Last-Modified make that a 304), so an upgrade shows at once
    "Cache-Control": "no-cache",
}


class Me(BaseModel):
    user: str
    groups: list[str]
    role: Role
    tenant: str
    principals: list[str]
    can_write: bool


@router.get("/v1/me", response_model=Me)
def who_am_i(principal: PrincipalDep) -> Me:
    """Who this API key is, and the ACL principals it matches (what it may see)."""
    return Me(
        user=principal.user,
        groups=list(principal.groups),
        role=principal.role,
        tenant=principal.tenant_id,
        principals=principal.acl_principals,
        can_write=principal.can_write(),
    )


@router.get("/v1/stats", response_model=Stats)
def stats(principal: PrincipalDep, container: ContainerDep) -> Stats:
    """The dashboard's figures, as JSON (GET /metrics is the Prometheus view of one process):
    documents the caller may see, jobs by state and workflow runs by status (an admin: the
    tenant's; others: their own), success rate and p50/p95/p99 run time over the latest 500 runs,
    the latest evaluation's hit rate, and the alert thresholds of deploy/prometheus/alerts.yml."""
    return compute(principal, container.sessions, container.runs)


@router.get("/", include_in_schema=False)
@router.get("/ui", include_in_schema=False)
def to_ui() -> RedirectResponse:
    # relative, so it also works behind a reverse proxy that mounts Cairn under a path
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui/", include_in_schema=False)
def ui_index() -> FileResponse:
    return _asset("index.html")


@router.get("/ui/{name}", include_in_schema=False)
def ui_asset(name: str) -> FileResponse:
    return _asset(name)


def _asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise NotFound(f"no UI file {name!r}")
    return FileResponse(UI_DIR / name, media_type=_ASSETS[name], headers=_HEADERS)
