"""Alembic: a fresh database migrated to head has exactly the tables the code declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import core.tables_runs  # noqa: F401  (registers the run tables on Base.metadata)
from app.db import make_engine, migrate
from core.tables import Base

pytestmark = pytest.mark.integration


def test_migrate_creates_the_workflow_run_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        migrate(engine)
        migrate(engine)  # safe on every start
        tables = set(inspect(engine).get_table_names())
        assert {"workflow_runs", "workflow_step_events", "api_keys", "documents"} <= tables
        indexes = {i["name"] for i in inspect(engine).get_indexes("workflow_step_events")}
        assert "ix_workflow_step_events_run_seq" in indexes
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []  # the migrations and the models agree
    finally:
        engine.dispose()
