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

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.models import JobState
from core.tables import Job

log = logging.getLogger(__name__)
ACTIVE_STATES = (JobState.queued, JobState.parsing, JobState.chunking, JobState.embedding)
_STOP = ""


class ThreadJobRunner:
    def __init__(self, run_batch: Callable[[list[str]], None], threads: int = 1, max_batch: int = 128) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
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
                    self._run_batch(jobs)
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
