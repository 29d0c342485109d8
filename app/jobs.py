"""In-process job runner for the embedded default: worker threads running the same task code
a Celery worker would. Embedding releases the GIL inside torch, so the API stays responsive."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.models import JobState
from core.tables import Job

log = logging.getLogger(__name__)
ACTIVE_STATES = (JobState.queued, JobState.parsing, JobState.chunking, JobState.embedding)


class ThreadJobRunner:
    def __init__(self, run: Callable[[str], None], threads: int = 1) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cairn-job")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def enqueue(self, job_id: str) -> None:
        fut = self._pool.submit(self._safe_run, job_id)
        with self._lock:
            self._pending.add(fut)
        fut.add_done_callback(self._forget)

    def _forget(self, fut: Future[None]) -> None:
        with self._lock:
            self._pending.discard(fut)

    def _safe_run(self, job_id: str) -> None:
        try:
            self._run(job_id)
        except Exception:  # the task records its own failure; this only keeps the worker alive
            log.exception("job %s crashed", job_id)

    def recover(self, sessions: sessionmaker[Session]) -> int:
        """Re-enqueue jobs a previous process accepted but did not finish. Safe because tasks
        are idempotent (deterministic chunk ids, version checks)."""
        with sessions() as s:
            ids = s.scalars(
                select(Job.id).where(Job.state.in_([st.value for st in ACTIVE_STATES])).order_by(Job.created_at)
            ).all()
        for job_id in ids:
            self.enqueue(job_id)
        return len(ids)

    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def wait_idle(self, timeout: float = 300.0) -> bool:
        deadline = threading.Event()
        waited = 0.0
        while not self.idle():
            if waited >= timeout:
                return False
            deadline.wait(0.05)
            waited += 0.05
        return True

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
