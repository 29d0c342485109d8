"""Alembic environment. The URL comes from the caller (app/db.py passes the configured one)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

import core.tables  # noqa: F401  (registers the tables on Base.metadata)
import core.tables_connectors  # noqa: F401  (connectors, their items and sync runs)
import core.tables_evals  # noqa: F401  (retrieval evaluation datasets and runs)
import core.tables_feedback  # noqa: F401  (answer feedback and tuning proposals)
import core.tables_governance  # noqa: F401  (PII vault and tenant data policies)
import core.tables_reindex  # noqa: F401  (reindex jobs and collection aliases)
import core.tables_runs  # noqa: F401  (workflow runs and their step events)
import core.tables_security  # noqa: F401  (key rotation, audit chain)
from core.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = engine_from_config(
            config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
        )
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
