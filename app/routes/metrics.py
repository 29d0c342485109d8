"""`GET /metrics` in the Prometheus text format.

Open by default, like most exporters (it carries no tenant data: no document, query or tenant
labels, only aggregates). Set CAIRN_METRICS_TOKEN to require `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.deps import ContainerDep
from core.errors import Unauthenticated

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response, include_in_schema=True)
async def prometheus_metrics(request: Request, container: ContainerDep) -> Response:
    token = container.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise Unauthenticated("this endpoint needs the metrics token: Authorization: Bearer <token>")
    await run_in_threadpool(metrics.refresh, container.sessions, container.settings.data_dir)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
