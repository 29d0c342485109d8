"""`GET /metrics` in the Prometheus text format.

Open by default, like most exporters: it carries aggregates only (no document or query text), but
token and cost counters are labelled by tenant id, so keep it off the edge (deploy/nginx.conf does)
and set CAIRN_METRICS_TOKEN to require `Authorization: Bearer <token>` (the k8s manifests do).
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
    metrics.record_breakers(container.gateway.breakers)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
