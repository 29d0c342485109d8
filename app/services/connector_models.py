"""What the connectors API accepts and returns (ORM rows never leave the service)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import UtcDateTime
from core.tables_connectors import ConnectorRow, ConnectorSync

MAX_REPORTED_ERRORS = 100


class ConnectorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:\-]*$")
    kind: Literal["filesystem", "sql", "http_json"]
    config: dict[str, Any]
    acl_default: list[str] = Field(default_factory=list)
    interval_s: int | None = Field(default=None, description="sync every N seconds; null: manual only")


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full: bool = Field(default=False, description="ignore the checkpoint: re-read (and retry) everything")


class ItemError(BaseModel):
    external_id: str | None
    reason: str


class SyncRunPublic(BaseModel):
    id: str  # also the job id (GET /v1/jobs/{id}, kind `sync`)
    trigger: str
    full: bool
    status: str  # queued | running | succeeded | partial | failed
    seen: int
    indexed: int
    unchanged: int
    failed: int
    deleted: int
    errors: list[ItemError]
    error: str | None
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class ItemTotals(BaseModel):
    """What Cairn holds for this connector now, across all syncs."""

    total: int = 0
    indexed: int = 0
    pending: int = 0
    failed: int = 0


class Schedule(BaseModel):
    interval_s: int | None
    next_run_at: UtcDateTime | None


class ConnectorPublic(BaseModel):
    id: str
    name: str
    kind: str
    config: dict[str, Any]  # secrets masked
    acl_default: list[str]
    schedule: Schedule
    owner: str
    created_at: UtcDateTime
    last_sync: SyncRunPublic | None
    items: ItemTotals


class ConnectorsPublic(BaseModel):
    data: list[ConnectorPublic]
    count: int


class SyncStarted(BaseModel):
    connector_id: str
    job_id: str
    status: str
    already_running: bool = False


class MissingItem(BaseModel):
    external_id: str
    reason: Literal["failed", "pending", "never_seen", "not_in_index"]
    detail: str


class ReconcileReport(BaseModel):
    """The source's ids against what Cairn has indexed for this connector."""

    connector_id: str
    checked_at: UtcDateTime
    source_count: int | None  # None: the source could not be listed (see source_error)
    indexed_count: int
    in_sync: bool
    missing_count: int
    missing: list[MissingItem]  # the first 1,000, ordered by external id
    stale: list[str]  # indexed here but gone from the source: deleted at the next sync
    source_error: str | None = None


def sync_public(run: ConnectorSync) -> SyncRunPublic:
    return SyncRunPublic(
        id=run.id, trigger=run.trigger, full=run.full, status=run.status, seen=run.seen, indexed=run.indexed,
        unchanged=run.unchanged, failed=run.failed, deleted=run.deleted,
        errors=[ItemError.model_validate(e) for e in run.errors], error=run.error, created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at,
    )


def connector_public(
    row: ConnectorRow, config: dict[str, Any], last: ConnectorSync | None, items: ItemTotals
) -> ConnectorPublic:
    next_run = None
    if row.interval_s:
        next_run = row.created_at if last is None else last.created_at + timedelta(seconds=row.interval_s)
    return ConnectorPublic(
        id=row.id, name=row.name, kind=row.kind, config=config, acl_default=list(row.acl_default),
        schedule=Schedule(interval_s=row.interval_s, next_run_at=next_run), owner=row.owner,
        created_at=row.created_at, last_sync=sync_public(last) if last else None, items=items,
    )
