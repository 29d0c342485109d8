"""In-process job runner for the embedded default: worker threads running the same task code
a Celery worker would. Embedding releases the GIL inside torch, so the API stays responsive.

A worker takes every queued job up to `max_batch` at once, so a bulk upload is embedded in
large model batches instead of one small call per document.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.job_eta import ThroughputLog, run_tracked
from core.errors import Conflict, NotFound, PermissionDenied
from core.models import JobState, Principal, Role
from core.tables import Job, utcnow

log = logging.getLogger(__name__)
ACTIVE_STATES = (JobState.queued, JobState.parsing, JobState.chunking, JobState.embedding)
_STOP = ""


class ThreadJobRunner:
    """Each batch is announced to `throughput` (if given) while it runs and recorded there when
    it completes: what job ETAs are estimated from."""

    def __init__(
        self,
        run_batch: Callable[[list[str]], None],
        threads: int = 1,
        max_batch: int = 128,
        throughput: ThroughputLog | None = None,
        kind: str = "ingest",
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._throughput = throughput
        self._kind = kind
        self._queue: queue.Queue[str] = queue.Queue()
        self._busy = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._threads = [
            threading.Thread(target=self._work, name=f"cairn-job-{i}", daemon=True) for i in range(threads)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def enqueue(self, job_id: str) -> None:
        with self._lock:
            self._busy += 1
        self._queue.put(job_id)

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stops = batch.count(_STOP)
            for _ in range(stops - 1):
                self._queue.put(_STOP)  # one stop marker per worker: hand the extras back
            jobs = [j for j in batch if j != _STOP]
            try:
                if jobs:
                    run_tracked(self._throughput, self._kind, jobs, self._run_batch)
            except Exception:  # the service records each job's failure; this keeps the worker alive
                log.exception("job batch %s crashed", jobs)
            finally:
                with self._lock:
                    self._busy -= len(jobs)
                    self._idle.notify_all()
            if stops:
                return

    def recover(self, sessions: sessionmaker[Session], kind: str = "ingest") -> int:
        """Re-enqueue jobs of `kind` a previous process accepted but did not finish. Safe because
        tasks are idempotent (deterministic chunk ids, version checks)."""
        with sessions() as s:
            ids = s.scalars(
                select(Job.id)
                .where(Job.kind == kind, Job.state.in_([st.value for st in ACTIVE_STATES]))
                .order_by(Job.created_at)
            ).all()
        for job_id in ids:
            self.enqueue(job_id)
        return len(ids)

    def depth(self) -> int:
        """Jobs accepted and not finished (queued or running)."""
        with self._lock:
            return self._busy

    def wait_idle(self, timeout: float = 300.0) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)

    def shutdown(self) -> None:
        """Finish what is queued, then stop the workers."""
        started = [t for t in self._threads if t.is_alive()]
        for _ in started:
            self._queue.put(_STOP)
        for t in started:
            t.join()


def set_job(
    s: Session,
    job_id: str,
    state: str,
    progress: float | None = None,
    error: str | None = None,
    finished: bool = False,
) -> None:
    """Mirror a run's state onto its job row (what `GET /v1/jobs/{id}` reads); `progress` None
    leaves it as it is. One helper for sync, eval, tuning and reindex runs."""
    job = s.get(Job, job_id)
    if job is None:
        return
    job.state, job.updated_at = state, utcnow()
    if progress is not None:
        job.progress = progress
    if error is not None:
        job.error = error
    if finished:
        job.finished_at = utcnow()


def requeue_active(
    sessions: sessionmaker[Session], table: Any, enqueue: Callable[[str], None],
    active: tuple[str, ...] = ("queued", "running"),
) -> int:
    """Runs of `table` (a row with a `status`) that a previous process left active go back to
    `queued` and into the queue; the caller's runner must be safe to run them again."""
    with sessions.begin() as s:
        rows = s.scalars(select(table).where(table.status.in_(active))).all()
        ids = [r.id for r in rows]
        for r in rows:
            r.status = "queued"
    for run_id in ids:
        enqueue(run_id)
    return len(ids)


class JobRetry:
    """`POST /v1/jobs/{id}/retry` for every kind: a failed job goes back to its queue under the
    same id (ingest reuses the stored original; a sync, evaluation or tuning run starts over; a
    reindex rebuilds a new generation). `requeue[kind]` resets the kind's own row and enqueues."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        retry_ingest: Callable[[Principal, str], None],
        enqueue: dict[str, Callable[[str], None]],
        retry_reindex: Callable[[str], None],
    ) -> None:
        self._sessions = sessions
        self._retry_ingest = retry_ingest
        self._enqueue = enqueue
        self._retry_reindex = retry_reindex

    def retry(self, principal: Principal, job_id: str) -> None:
        with self._sessions() as s:
            job = s.get(Job, job_id)
            if job is None or job.tenant_id != principal.tenant_id or (
                job.created_by != principal.user and principal.role is not Role.admin
            ):
                raise NotFound(f"job {job_id!r} not found")
            kind, state = job.kind, job.state
        if kind == "ingest":
            self._retry_ingest(principal, job_id)
            return
        if not principal.can_write():
            raise PermissionDenied("retrying a job needs the editor or admin role")
        if state != JobState.failed.value or kind not in ("sync", "eval", "tune", "reindex"):
            raise Conflict(f"only failed jobs can be retried; this {kind} job is {state}")
        if kind == "reindex":
            self._retry_reindex(job_id)
            return
        with self._sessions.begin() as s:
            row: Any = s.get(_kind_table(kind), job_id, with_for_update=True)
            if row is None:  # its connector, dataset or proposal was deleted: nothing left to run
                raise Conflict(f"this {kind} job can no longer be retried: what it ran for no longer exists")
            reset: Any = s.execute(update(Job).where(Job.id == job_id, Job.state == JobState.failed.value).values(
                state="queued", error=None, progress=0.0, finished_at=None, updated_at=utcnow()))
            if reset.rowcount != 1:  # a concurrent retry got there first
                raise Conflict(f"only failed jobs can be retried; this {kind} job is no longer failed")
            row.status, row.error, row.finished_at = "queued", None, None
        self._enqueue[kind](job_id)


def _kind_table(kind: str) -> Any:
    from core.tables_connectors import ConnectorSync
    from core.tables_evals import EvalRun
    from core.tables_feedback import TuningProposal

    return {"sync": ConnectorSync, "eval": EvalRun, "tune": TuningProposal}[kind]
