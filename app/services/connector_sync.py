"""One connector sync, end to end: poll -> skip / submit / record failures -> delete what the
source no longer has -> wait for the ingest jobs -> record counts and the new checkpoint.

A sync is complete only when every ingest job it submitted has finished, so "succeeded" means
the documents are searchable. Per-item problems never stop a sync; they are counted, kept on
the item (`connector_items.error`) and listed on the run. The checkpoint advances only after a
poll read to its end, so an interrupted sync starts again from the last good point.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import set_job
from app.services._sync_state import Known, SyncRun
from app.services.connectors import connector_doc_id, owner_principal
from app.services.document_models import SubmitResult
from app.services.documents import DocumentService, Upload
from core.connectors import SourceDocument, SourceFailure, SyncCheckpoint
from core.errors import CairnError, NotFound, RateLimited
from core.models import DocumentMetadata, JobState, Principal
from core.tables import Document, Job, utcnow
from core.tables_connectors import ConnectorItem, ConnectorRow, ConnectorSync
from ingestion.connectors import AccessPolicy, build_connector

log = logging.getLogger(__name__)
_FLUSH_EVERY = 200
_POLL_JOBS_S = 0.2
_DONE = (JobState.indexed.value, JobState.failed.value)
_TOUCH_EVERY_S = 30.0  # a running sync shows it is alive (Job.updated_at) at least this often


class _Stopped(Exception):
    """Shutdown mid-sync: the run goes back to `queued` and the next start runs it again."""


class ConnectorSyncRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        documents: DocumentService,
        policy: AccessPolicy,
        timeout_s: float = 3600.0,
        stale_after_s: float = 900.0,
    ) -> None:
        self._sessions = sessions
        self._documents = documents
        self._policy = policy
        self._timeout_s = timeout_s
        self._stale = timedelta(seconds=stale_after_s)
        self._stop = threading.Event()
        self._touched: dict[str, float] = {}  # sync id -> monotonic time of its last Job.updated_at

    def stop(self) -> None:
        self._stop.set()

    def run_jobs(self, sync_ids: list[str]) -> None:
        for sync_id in sync_ids:
            try:
                self.run(sync_id)
            except _Stopped:
                self._finish(sync_id, "queued", None, job_state=JobState.queued.value)
            except Exception:
                log.exception("connector sync %s crashed", sync_id)
                self._finish(sync_id, "failed", "internal error during the sync; see the server log")

    def fail_jobs(self, sync_ids: list[str], reason: str) -> None:
        """A Celery worker's retries ran out (the database or queue kept failing)."""
        for sync_id in sync_ids:
            self._finish(sync_id, "failed", reason)

    def run(self, sync_id: str) -> None:
        with self._sessions.begin() as s:
            sync = s.get(ConnectorSync, sync_id, with_for_update=True)
            if sync is None or sync.status not in ("queued", "running"):
                return  # idempotent: a redelivered task for a finished sync does nothing
            job = s.get(Job, sync_id)
            if sync.status == "running" and job is not None and _aware(job.updated_at) > utcnow() - self._stale:
                return  # running elsewhere (a redelivery or a re-send of a slow sync): one at a time
            row = s.get(ConnectorRow, sync.connector_id)
            if row is None:
                return
            sync.status, sync.started_at = "running", utcnow()
            set_job(s, sync_id, "running", 0.05)
            checkpoint = SyncCheckpoint() if sync.full else SyncCheckpoint(state=dict(row.checkpoint))
            connector_id, kind, config = row.id, row.kind, dict(row.config)
            name, acl_default, owner = row.name, list(row.acl_default), owner_principal(row)
        run, started = SyncRun(sync_id), time.monotonic()
        self._touched[sync_id] = started
        try:
            self._sync(run, started, connector_id, kind, config, name, acl_default, owner, checkpoint)
        finally:
            self._touched.pop(sync_id, None)

    def _sync(
        self, run: SyncRun, started: float, connector_id: str, kind: str, config: dict[str, Any], name: str,
        acl_default: list[str], owner: Principal, checkpoint: SyncCheckpoint,
    ) -> None:
        sync_id = run.sync_id
        known = self._known(connector_id, owner.tenant_id)
        error: str | None = None
        new_checkpoint: SyncCheckpoint | None = None
        try:
            connector = build_connector(kind, config, self._policy)
        except CairnError as exc:
            self._finish(sync_id, "failed", exc.message)
            return
        try:
            for item in self._stoppable(connector.poll(checkpoint), sync_id):
                run.counts["seen"] += 1
                if isinstance(item, SourceFailure):
                    self._record_failure(run, connector_id, item)
                else:
                    self._index(run, connector_id, name, owner, acl_default, known.get(item.external_id), item)
                if len(run.writes) >= _FLUSH_EVERY:
                    self._flush(run, connector_id)
            new_checkpoint = connector.next_checkpoint()
            self._flush(run, connector_id)
            self._delete_vanished(run, connector_id, owner, known, connector.list_ids)
        except CairnError as exc:
            error = exc.message
        finally:
            connector.close()
        self._flush(run, connector_id)
        read_s = time.monotonic() - started
        error = self._wait(run, connector_id) or error
        with self._sessions.begin() as s:
            if new_checkpoint is not None and error is None:
                s.execute(update(ConnectorRow).where(ConnectorRow.id == connector_id)
                          .values(checkpoint=new_checkpoint.state, updated_at=utcnow()))
        status = "failed" if error else ("partial" if run.counts["failed"] else "succeeded")
        self._finish(sync_id, status, error, run)
        log.info("connector %s sync %s %s: %s; read+submit %.1f s, total %.1f s", name, sync_id, status,
                 run.counts, read_s, time.monotonic() - started)

    def _stoppable(self, items: Iterator[Any], sync_id: str) -> Iterator[Any]:
        for item in items:
            if self._stop.is_set():
                raise _Stopped
            self._touch(sync_id)
            yield item

    def _touch(self, sync_id: str, force: bool = False) -> None:
        """Refresh Job.updated_at (at most every `_TOUCH_EVERY_S` unless forced), so that the
        recovery sweep never re-sends a sync that is alive and the claim in `run` refuses a
        second copy of it."""
        now = time.monotonic()
        if not force and now - self._touched.get(sync_id, 0.0) < _TOUCH_EVERY_S:
            return
        self._touched[sync_id] = now
        with self._sessions.begin() as s:
            s.execute(update(Job).where(Job.id == sync_id).values(updated_at=utcnow()))

    def _known(self, connector_id: str, tenant_id: str) -> dict[str, Known]:
        with self._sessions() as s:
            live = set(s.scalars(select(Document.doc_id).where(
                Document.tenant_id == tenant_id, Document.current_version > 0,
                Document.doc_id.in_(select(ConnectorItem.doc_id).where(ConnectorItem.connector_id == connector_id)))))
            return {
                i.external_id: Known(i.doc_id, i.content_hash, list(i.acl), i.status, i.doc_id in live)
                for i in s.scalars(select(ConnectorItem).where(ConnectorItem.connector_id == connector_id))
            }

    def _record_failure(self, run: SyncRun, connector_id: str, item: SourceFailure) -> None:
        run.fail(item.external_id, item.reason)
        if item.external_id is not None:
            run.writes[item.external_id] = {"doc_id": connector_doc_id(connector_id, item.external_id),
                                            "status": "failed", "error": item.reason}

    def _index(
        self, run: SyncRun, connector_id: str, name: str, owner: Principal, acl_default: list[str],
        known: Known | None, item: SourceDocument,
    ) -> None:
        acl = sorted(set(item.acl or acl_default))
        fingerprint = item.fingerprint()
        ext = item.external_id
        if known and known.fingerprint == fingerprint and sorted(known.acl) == acl and known.status == "indexed" \
                and known.live:
            run.counts["unchanged"] += 1
            run.writes[ext] = {}  # only last_seen moves
            return
        doc_id = connector_doc_id(connector_id, ext)
        meta = DocumentMetadata(
            doc_id=doc_id, title=item.title or ext, tags=item.tags, acl=acl, source=name, external_id=ext,
            extra={**item.metadata, "connector_id": connector_id},
        )
        try:
            result = self._submit(owner, Upload(item.content, item.filename, item.content_type), meta, run.sync_id)
        except CairnError as exc:
            run.fail(ext, exc.message)
            run.writes[ext] = {"doc_id": doc_id, "status": "failed", "error": exc.message,
                               "content_hash": fingerprint, "acl": acl, "job_id": None}
            return
        run.submitted[result.job_id] = ext
        run.writes[ext] = {"doc_id": doc_id, "status": "pending", "error": None, "content_hash": fingerprint,
                           "acl": acl, "job_id": result.job_id}

    def _submit(self, owner: Principal, upload: Upload, meta: DocumentMetadata, sync_id: str) -> SubmitResult:
        """A full ingest queue is back-pressure, not an item failure: wait and submit again."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return self._documents.submit(owner, upload, meta)
            except RateLimited as exc:
                if time.monotonic() > deadline:
                    raise
                self._touch(sync_id)
                if self._stop.wait(min(max(exc.retry_after, 0.1), 2.0)):
                    raise _Stopped from None

    def _flush(self, run: SyncRun, connector_id: str) -> None:
        """Item rows and running counts, in one transaction per batch of items."""
        writes, run.writes = run.writes, {}
        now = utcnow()
        with self._sessions.begin() as s:
            if writes:
                rows = {i.external_id: i for i in s.scalars(select(ConnectorItem).where(
                    ConnectorItem.connector_id == connector_id, ConnectorItem.external_id.in_(list(writes))))}
                for ext, values in writes.items():
                    item = rows.get(ext)
                    if item is None:
                        if not values:
                            continue
                        item = ConnectorItem(connector_id=connector_id, external_id=ext, content_hash="", acl=[])
                        s.add(item)
                    for key, value in {**values, "last_seen": now}.items():
                        setattr(item, key, value)
            s.execute(update(ConnectorSync).where(ConnectorSync.id == run.sync_id)
                      .values(**run.counts, errors=list(run.errors)))
            s.execute(update(Job).where(Job.id == run.sync_id).values(updated_at=now))
        self._touched[run.sync_id] = time.monotonic()

    def _delete_vanished(
        self, run: SyncRun, connector_id: str, owner: Principal, known: dict[str, Known], list_ids: Any
    ) -> None:
        """Deletions come only from a complete listing; a failed or empty one deletes nothing."""
        try:
            present: set[str] = list_ids()
        except CairnError as exc:
            run.errors.append({"external_id": None, "reason": f"deletions skipped: {exc.message}"})
            return
        gone = [ext for ext in known if ext not in present]
        if gone and not present:
            run.errors.append({"external_id": None, "reason": "deletions skipped: the source listed no items at "
                               "all; delete the connector to remove its documents"})
            return
        for ext in gone:
            self._touch(run.sync_id)
            try:
                self._documents.delete(owner, known[ext].doc_id)
            except NotFound:
                pass
            except CairnError as exc:
                run.fail(ext, f"could not delete the document: {exc.message}")
                continue
            with self._sessions.begin() as s:
                item = s.get(ConnectorItem, (connector_id, ext))
                if item is not None:
                    s.delete(item)
            run.counts["deleted"] += 1

    def _wait(self, run: SyncRun, connector_id: str) -> str | None:
        """Until every submitted ingest job has finished; their outcome lands on the items."""
        waiting = dict(run.submitted)
        total = len(waiting) or 1
        deadline = time.monotonic() + self._timeout_s
        while waiting:
            if self._stop.is_set():
                raise _Stopped
            ids = list(waiting)
            with self._sessions.begin() as s:
                done: list[Any] = []
                for start in range(0, len(ids), 500):
                    done += s.execute(select(Job.id, Job.state, Job.error).where(
                        Job.id.in_(ids[start:start + 500]), Job.state.in_(_DONE))).all()
                for job_id, state, job_error in done:
                    ext = waiting.pop(job_id)
                    ok = state == JobState.indexed.value
                    if ok:
                        run.counts["indexed"] += 1
                    else:
                        run.fail(ext, job_error or "the ingest job failed")
                    s.execute(update(ConnectorItem)
                              .where(ConnectorItem.connector_id == connector_id, ConnectorItem.external_id == ext)
                              .values(status="indexed" if ok else "failed", error=None if ok else job_error))
                s.execute(update(ConnectorSync).where(ConnectorSync.id == run.sync_id)
                          .values(**run.counts, errors=list(run.errors)))
                set_job(s, run.sync_id, "running", 0.5 + 0.5 * (1 - len(waiting) / total))
            if waiting:
                if time.monotonic() > deadline:
                    return (f"{len(waiting)} ingest jobs were still running after {self._timeout_s:.0f} s "
                            "(CAIRN_CONNECTORS__SYNC_TIMEOUT_S); they finish in the background, see reconcile")
                time.sleep(_POLL_JOBS_S)
        return None

    def _finish(self, sync_id: str, status: str, error: str | None, run: SyncRun | None = None,
                job_state: str | None = None) -> None:
        finished = status not in ("queued", "running")
        with self._sessions.begin() as s:
            sync = s.get(ConnectorSync, sync_id)
            if sync is not None:
                sync.status, sync.error = status, error
                sync.finished_at = utcnow() if finished else None
                if run is not None:
                    for key, value in run.counts.items():
                        setattr(sync, key, value)
                    sync.errors = list(run.errors)
            set_job(s, sync_id, job_state or ("failed" if status == "failed" else "succeeded"),
                     1.0 if finished else 0.0, error=error, finished=finished)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
