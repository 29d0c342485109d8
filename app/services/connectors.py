"""Connectors: create them, start syncs, show their state, reconcile them with their source.

A connector belongs to the user who created it (an editor or admin); its documents are written
as that owner, so the owner keeps access to everything it indexes, like any uploader. Only the
owner and the tenant's admins see a connector; to anyone else it does not exist (404).
"""

from __future__ import annotations

import builtins
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import requeue_active
from app.services.connector_models import (
    ConnectorCreate,
    ConnectorPublic,
    ConnectorsPublic,
    ItemTotals,
    MissingItem,
    ReconcileReport,
    SyncStarted,
    connector_public,
)
from app.services.documents import DocumentService, resolve_acl
from core.errors import CairnError, Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import JobState, Principal, Role
from core.tables import Document, Job, utcnow
from core.tables_connectors import ConnectorItem, ConnectorRow, ConnectorSync
from ingestion.connectors import AccessPolicy, build_connector, parse_config

ACTIVE = ("queued", "running")
_DOC_NAMESPACE = uuid.UUID("2b0c3f5e-51a4-4d0e-9d57-6a1f0f3c9e21")
_MAX_MISSING = 1000


def connector_doc_id(connector_id: str, external_id: str) -> str:
    """Deterministic: the same source item always lands on the same Cairn document."""
    key = connector_id + "\x1f" + external_id
    return f"conn-{uuid.uuid5(_DOC_NAMESPACE, key).hex}"


def owner_principal(row: ConnectorRow) -> Principal:
    return Principal(tenant_id=row.tenant_id, user=row.owner, groups=tuple(row.owner_groups), role=Role(row.owner_role))


class ConnectorService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        documents: DocumentService,
        policy: AccessPolicy,
        enqueue: Callable[[str], None],
        min_interval_s: int = 60,
    ) -> None:
        self._sessions = sessions
        self._documents = documents
        self.policy = policy
        self._enqueue = enqueue
        self._min_interval_s = min_interval_s

    # ---- create / read / delete -----------------------------------------------------------

    def create(self, principal: Principal, body: ConnectorCreate) -> ConnectorPublic:
        if not principal.can_write():
            raise PermissionDenied("creating a connector needs the editor or admin role")
        config = parse_config(body.kind, body.config)
        config.check_access(self.policy)
        acl_default = sorted(set(resolve_acl(principal, body.acl_default)) - {f"user:{principal.user}"})
        if body.interval_s is not None and body.interval_s < self._min_interval_s:
            raise InvalidInput(
                f"interval_s must be at least {self._min_interval_s} seconds (CAIRN_CONNECTORS__MIN_INTERVAL_S)",
                field="interval_s",
            )
        row = ConnectorRow(
            id=secrets.token_hex(12), tenant_id=principal.tenant_id, name=body.name, kind=body.kind,
            config=body.config, acl_default=acl_default, interval_s=body.interval_s, owner=principal.user,
            owner_groups=list(principal.groups), owner_role=principal.role.value, checkpoint={},
        )
        with self._sessions.begin() as s:
            taken = s.scalar(select(ConnectorRow.id).where(
                ConnectorRow.tenant_id == principal.tenant_id, ConnectorRow.name == body.name))
            if taken:
                raise Conflict(f"a connector named {body.name!r} already exists", field="name")
            s.add(row)
        return self.get(principal, row.id)

    def _load(self, s: Session, principal: Principal, connector_id: str) -> ConnectorRow:
        row = s.get(ConnectorRow, connector_id)
        if row is None or row.tenant_id != principal.tenant_id or not _may_see(principal, row):
            raise NotFound(f"connector {connector_id!r} not found")
        return row

    def get(self, principal: Principal, connector_id: str) -> ConnectorPublic:
        with self._sessions() as s:
            return self._public(s, self._load(s, principal, connector_id))

    def list(self, principal: Principal) -> ConnectorsPublic:
        q = select(ConnectorRow).where(ConnectorRow.tenant_id == principal.tenant_id)
        if principal.role is not Role.admin:
            q = q.where(ConnectorRow.owner == principal.user)
        with self._sessions() as s:
            data = [self._public(s, row) for row in s.scalars(q.order_by(ConnectorRow.created_at))]
        return ConnectorsPublic(data=data, count=len(data))

    def _public(self, s: Session, row: ConnectorRow) -> ConnectorPublic:
        last = s.scalars(select(ConnectorSync).where(ConnectorSync.connector_id == row.id)
                         .order_by(ConnectorSync.created_at.desc()).limit(1)).first()
        counts = dict(s.execute(select(ConnectorItem.status, func.count()).where(
            ConnectorItem.connector_id == row.id).group_by(ConnectorItem.status)).tuples().all())
        totals = ItemTotals(total=sum(counts.values()), indexed=counts.get("indexed", 0),
                            pending=counts.get("pending", 0), failed=counts.get("failed", 0))
        try:
            config = parse_config(row.kind, row.config).public()
        except CairnError:
            config = {}
        return connector_public(row, config, last, totals)

    def delete(self, principal: Principal, connector_id: str, keep_documents: bool = False) -> None:
        """Removes the connector and, unless asked to keep them, the documents it indexed."""
        with self._sessions() as s:
            row = self._load(s, principal, connector_id)
            if not principal.can_write():
                raise PermissionDenied("deleting a connector needs the editor or admin role")
            if self._active_sync(s, connector_id):
                raise Conflict("a sync of this connector is running; delete it when the sync has finished")
            doc_ids = s.scalars(select(ConnectorItem.doc_id).where(ConnectorItem.connector_id == connector_id)).all()
            owner = owner_principal(row)
        if not keep_documents:
            for doc_id in doc_ids:
                try:
                    self._documents.delete(owner, doc_id)
                except NotFound:
                    pass
        with self._sessions.begin() as s:
            s.execute(delete(ConnectorItem).where(ConnectorItem.connector_id == connector_id))
            s.execute(delete(ConnectorSync).where(ConnectorSync.connector_id == connector_id))
            s.execute(delete(ConnectorRow).where(ConnectorRow.id == connector_id))

    # ---- syncs ----------------------------------------------------------------------------

    @staticmethod
    def _active_sync(s: Session, connector_id: str) -> ConnectorSync | None:
        return s.scalars(select(ConnectorSync).where(
            ConnectorSync.connector_id == connector_id, ConnectorSync.status.in_(ACTIVE))).first()

    def request_sync(self, principal: Principal, connector_id: str, full: bool = False) -> SyncStarted:
        if not principal.can_write():
            raise PermissionDenied("starting a sync needs the editor or admin role")
        with self._sessions() as s:
            self._load(s, principal, connector_id)
        return self._start(connector_id, "manual", full, principal.user)

    def _start(self, connector_id: str, trigger: str, full: bool, by: str) -> SyncStarted:
        """One sync per connector at a time: asking again while one is queued or running
        returns that one, so a double click or an overlapping schedule never runs two."""
        with self._sessions.begin() as s:
            row = s.get(ConnectorRow, connector_id, with_for_update=True)
            if row is None:
                raise NotFound(f"connector {connector_id!r} not found")
            running = self._active_sync(s, connector_id)
            if running is not None:
                return SyncStarted(connector_id=connector_id, job_id=running.id, status=running.status,
                                   already_running=True)
            sync_id = secrets.token_hex(12)
            s.add(ConnectorSync(id=sync_id, connector_id=connector_id, tenant_id=row.tenant_id, trigger=trigger,
                                full=full, status="queued", errors=[]))
            s.add(Job(id=sync_id, tenant_id=row.tenant_id, kind="sync", state=JobState.queued.value, created_by=by))
        self._enqueue(sync_id)  # after the commit
        return SyncStarted(connector_id=connector_id, job_id=sync_id, status="queued")

    def run_due(self, now: datetime | None = None) -> builtins.list[str]:  # `list` is a method here
        """Start every scheduled connector whose interval has passed since its last sync. The
        in-process scheduler calls this on a tick; in scale-out a Celery beat task can."""
        now = now or datetime.now(UTC)
        started = []
        with self._sessions() as s:
            rows = s.scalars(select(ConnectorRow).where(ConnectorRow.interval_s.is_not(None))).all()
            last = dict(s.execute(select(ConnectorSync.connector_id, func.max(ConnectorSync.created_at))
                                  .group_by(ConnectorSync.connector_id)).tuples().all())
        for row in rows:
            previous = last.get(row.id)
            if previous is not None and _utc(previous) + timedelta(seconds=row.interval_s or 0) > now:
                continue
            result = self._start(row.id, "schedule", False, row.owner)
            if not result.already_running:
                started.append(result.job_id)
        return started

    def recover(self) -> int:
        """Syncs a previous process left queued or running go back in the queue; a sync is
        safe to run again (unchanged items are skipped by fingerprint)."""
        return requeue_active(self._sessions, ConnectorSync, self._enqueue, ACTIVE)

    # ---- reconciliation -------------------------------------------------------------------

    def reconcile(self, principal: Principal, connector_id: str) -> ReconcileReport:
        with self._sessions() as s:
            row = self._load(s, principal, connector_id)
            kind, config = row.kind, dict(row.config)
            items = {i.external_id: i for i in s.scalars(
                select(ConnectorItem).where(ConnectorItem.connector_id == connector_id))}
            live = set(s.scalars(select(Document.doc_id).where(
                Document.tenant_id == row.tenant_id, Document.current_version > 0,
                Document.doc_id.in_(select(ConnectorItem.doc_id).where(ConnectorItem.connector_id == connector_id)))))
            jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(
                select(ConnectorItem.job_id).where(ConnectorItem.connector_id == connector_id,
                                                   ConnectorItem.status == "pending"))))}
        source_ids: set[str] | None = None
        source_error = None
        connector = build_connector(kind, config, self.policy)
        try:
            source_ids = connector.list_ids()
        except CairnError as exc:
            source_error = exc.message
        finally:
            connector.close()
        indexed = {ext for ext, item in items.items() if item.doc_id in live}
        missing = [] if source_ids is None else [
            _why_missing(ext, items.get(ext), jobs) for ext in sorted(source_ids - indexed)
        ]
        stale = [] if source_ids is None else sorted(indexed - source_ids)
        return ReconcileReport(
            connector_id=connector_id, checked_at=utcnow(),
            source_count=None if source_ids is None else len(source_ids), indexed_count=len(indexed),
            in_sync=source_ids is not None and not missing and not stale, missing_count=len(missing),
            missing=missing[:_MAX_MISSING], stale=stale[:_MAX_MISSING], source_error=source_error,
        )


def _why_missing(external_id: str, item: ConnectorItem | None, jobs: dict[str, Job]) -> MissingItem:
    if item is None:
        return MissingItem(external_id=external_id, reason="never_seen",
                           detail="no sync has read this item yet; run a sync (full=true if the cursor passed it)")
    if item.status == "failed":
        return MissingItem(external_id=external_id, reason="failed", detail=item.error or "failed")
    if item.status == "pending":
        job = jobs.get(item.job_id or "")
        if job is not None and job.state == JobState.failed.value:
            return MissingItem(external_id=external_id, reason="failed", detail=job.error or "the ingest job failed")
        state = job.state if job is not None else "unknown"
        return MissingItem(external_id=external_id, reason="pending", detail=f"ingest job {item.job_id} is {state}")
    return MissingItem(external_id=external_id, reason="not_in_index", detail="the document was removed from "
                       "Cairn outside this connector; the next full sync restores it")


def _may_see(principal: Principal, row: ConnectorRow) -> bool:
    return principal.role is Role.admin or row.owner == principal.user


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
