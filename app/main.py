"""FastAPI application factory. Models and the engine load in the lifespan, never at import."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from app import errors, tracing
from app.container import Container
from app.metrics import MetricsMiddleware
from app.routes import (
    admin,
    answers,
    audit,
    chat,
    connectors,
    documents,
    eval_datasets,
    evals,
    feedback,
    governance,
    health,
    jobs,
    keys,
    metrics,
    reindex,
    runs,
    search,
    support,
    tuning,
    ui,
    workflows,
)
from app.upload_limit import UploadSizeLimit
from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        c = container or Container(settings or get_settings())
        if container is None:
            c.start()
        app.state.container = c
        tracer = tracing.configure(c.settings.otel)
        # in the background: a long interrupted run must not hold up serving new requests
        recovery = asyncio.create_task(c.recover_runs(), name="recover-workflow-runs")
        try:
            yield
        finally:
            recovery.cancel()
            with suppress(asyncio.CancelledError):
                await recovery
            if container is None:  # a container passed in belongs to its caller, clients included
                await c.gateway.aclose()
                c.close()
            tracing.shutdown(tracer)

    app = FastAPI(
        title="Cairn",
        version="0.1.0",
        description=(
            "Self-hosted enterprise RAG: documents with ACLs, hybrid search, grounded answers, "
            "workflow runs and an OpenAI-compatible chat endpoint."
        ),
        lifespan=lifespan,
        responses=errors.ERROR_RESPONSES,
    )
    errors.install(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(UploadSizeLimit)  # before the multipart body is parsed and spooled
    if (container.settings if container else settings or get_settings()).otel.endpoint:
        app.add_middleware(tracing.TracingMiddleware)  # outermost: the request span parents all others
    for module in (eval_datasets, evals, metrics, connectors, support, governance):
        app.include_router(module.router)
    for module in (health, keys, documents, jobs, search, answers, chat, workflows, runs, ui):
        app.include_router(module.router)
    for module in (admin, audit, reindex):
        app.include_router(module.router)
    for module in (feedback, tuning):
        app.include_router(module.router)
    return app
