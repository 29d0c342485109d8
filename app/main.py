"""FastAPI application factory. Models and the engine load in the lifespan, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import errors
from app.container import Container
from app.routes import documents, health, jobs, keys, search
from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        c = container or Container(settings or get_settings())
        if container is None:
            c.start()
        app.state.container = c
        try:
            yield
        finally:
            if container is None:
                c.close()

    app = FastAPI(
        title="Cairn",
        version="0.1.0",
        description="Self-hosted enterprise RAG: documents with ACLs, hybrid search, grounded answers.",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (health, keys, documents, jobs, search):
        app.include_router(module.router)
    return app
