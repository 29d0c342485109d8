"""A SQL table or query (support tickets, CRM records) read through SQLAlchemy, so any database
with a SQLAlchemy dialect works. Incremental by an `updated_at` cursor; deletions are found by
listing the id column. Reads run in a read-only transaction where the database supports it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from core.connectors import SourceDocument, SourceFailure, SourceItem, SyncCheckpoint, map_acl, split_values
from core.errors import InvalidInput, Unavailable
from ingestion.connectors._policy import AccessPolicy
from ingestion.connectors._template import render, template_fields

_SELECT = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


class SqlConfig(BaseModel):
    """Either `table` (optionally `schema.table`) or `query` (one SELECT). `text_template` and
    `title_template` use `{column}` names; `acl_column` holds a list or a comma-separated
    string of principals (bare names get `acl_prefix`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sql"] = "sql"
    url: str = Field(min_length=1)
    table: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    query: str | None = None
    id_column: str = "id"
    updated_at_column: str | None = "updated_at"
    title_template: str | None = None
    text_template: str = Field(min_length=1)
    metadata_columns: list[str] = Field(default_factory=list)
    tags_column: str | None = None
    acl_column: str | None = None
    acl_prefix: Literal["group:", "user:"] = "group:"
    batch_size: int = Field(default=500, ge=1, le=10_000)

    @model_validator(mode="after")
    def _check(self) -> SqlConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        if self.query is not None:
            self.query = self.query.strip().rstrip(";")
            if not _SELECT.match(self.query) or ";" in self.query:
                raise ValueError("'query' must be a single SELECT (or WITH ... SELECT) statement")
        template_fields(self.text_template, "text_template")
        if self.title_template:
            template_fields(self.title_template, "title_template")
        return self

    def check_access(self, policy: AccessPolicy) -> None:
        try:
            url = make_url(self.url)
        except ArgumentError:
            raise InvalidInput("'url' is not a SQLAlchemy database URL", field="config") from None
        if url.get_backend_name() == "sqlite":
            if not url.database or url.database == ":memory:":
                raise InvalidInput("a SQLite source needs a database file", field="config")
            policy.check_path(Path(url.database), "SQLite database")
        else:
            policy.check_host(url.host, "database")
        try:
            url.get_dialect().import_dbapi()
        except (ArgumentError, ImportError):
            raise InvalidInput(f"no database driver for {url.drivername!r} is installed on the server",
                               field="config") from None

    def public(self) -> dict[str, Any]:
        data = self.model_dump()
        try:
            data["url"] = make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:
            data["url"] = "***"
        return data

    def build(self, policy: AccessPolicy) -> SqlConnector:
        return SqlConnector(self)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _cursor_out(value: Any) -> dict[str, Any]:
    if isinstance(value, datetime):
        return {"cursor": value.isoformat(), "cursor_type": "datetime"}
    if isinstance(value, date):
        return {"cursor": value.isoformat(), "cursor_type": "date"}
    return {"cursor": _json_safe(value), "cursor_type": "value"}


def _cursor_in(state: dict[str, Any]) -> Any:
    raw, kind = state.get("cursor"), state.get("cursor_type")
    if raw is None:
        return None
    if kind == "datetime":
        return datetime.fromisoformat(raw)
    if kind == "date":
        return date.fromisoformat(raw)
    return raw


class SqlConnector:
    def __init__(self, config: SqlConfig) -> None:
        self._config = config
        self._engine: Engine = create_engine(config.url, pool_pre_ping=True)
        q = self._engine.dialect.identifier_preparer.quote
        self._q = q
        self._base = config.query or "SELECT * FROM " + ".".join(q(p) for p in (config.table or "").split("."))
        self._cursor: dict[str, Any] = {}

    def _col(self, name: str) -> str:
        return f"cairn_src.{self._q(name)}"

    def _rows(self, sql: str, params: dict[str, Any]) -> Iterator[Any]:
        """Streams rows in batches; database errors become Unavailable with a safe message."""
        try:
            with self._engine.connect() as conn:
                options: dict[str, Any] = {"stream_results": True, "yield_per": self._config.batch_size}
                if self._engine.dialect.name == "postgresql":
                    options["postgresql_readonly"] = True
                result = conn.execution_options(**options).execute(text(sql), params)
                yield from result.mappings()
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"the SQL source could not be read ({exc.__class__.__name__}); check the connector's url, "
                "table or query and that its columns exist"
            ) from exc

    def poll(self, checkpoint: SyncCheckpoint) -> Iterator[SourceItem]:
        c = self._config
        sql, params = f"SELECT * FROM ({self._base}) AS cairn_src", {}
        cursor = _cursor_in(checkpoint.state)
        self._cursor = dict(checkpoint.state)
        if c.updated_at_column:
            upd = self._col(c.updated_at_column)
            if cursor is not None:
                # `>=` plus NULLs: a row written later with the same timestamp is not missed
                sql += f" WHERE {upd} >= :cursor OR {upd} IS NULL"
                params["cursor"] = cursor
            sql += f" ORDER BY {upd}, {self._col(c.id_column)}"
        newest = cursor
        for row in self._rows(sql, params):
            item = self._item(row)
            yield item
            stamp = row.get(c.updated_at_column) if c.updated_at_column else None
            if stamp is not None and (newest is None or stamp > newest):
                newest = stamp
        if newest is not None:
            self._cursor = _cursor_out(newest)

    def _item(self, row: Any) -> SourceItem:
        c = self._config
        if row.get(c.id_column) is None:
            return SourceFailure(reason=f"a row has no value in id column {c.id_column!r}")
        external_id = str(row[c.id_column])
        body = render(c.text_template, row)
        if not body.strip():
            return SourceFailure(external_id=external_id, reason="text_template rendered an empty text for this row")
        title = render(c.title_template, row) if c.title_template else external_id
        tags = split_values(row.get(c.tags_column)) if c.tags_column else []
        updated = row.get(c.updated_at_column) if c.updated_at_column else None
        return SourceDocument(
            external_id=external_id, title=title.strip() or external_id, content=body.encode(),
            filename=f"{external_id}.txt", content_type="text/plain",
            acl=map_acl(row.get(c.acl_column), c.acl_prefix) if c.acl_column else [],
            tags=tags, metadata={k: _json_safe(row.get(k)) for k in c.metadata_columns},
            updated_at=updated if isinstance(updated, datetime) else None,
        )

    def next_checkpoint(self) -> SyncCheckpoint:
        return SyncCheckpoint(state=self._cursor)

    def list_ids(self) -> set[str]:
        sql = f"SELECT {self._col(self._config.id_column)} AS id FROM ({self._base}) AS cairn_src"
        return {str(r["id"]) for r in self._rows(sql, {}) if r["id"] is not None}

    def close(self) -> None:
        self._engine.dispose()
