"""How the API hands jobs to workers, refuses work it cannot take, and recovers lost jobs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.errors import QueueUnavailable, RateLimited
from core.models import JobState
from core.tables import Job, utcnow

log = logging.getLogger(__name__)
ACTIVE = [JobState.queued.value, JobState.parsing.value, JobState.chunking.value, JobState.embedding.value,
          "running"]


class CeleryDispatcher:
    """Enqueue on Celery; `admit()` runs before anything is stored, so a refusal loses nothing."""

    def __init__(self, redis_client: Any, celery_app: Any, queue: str, task: str, max_depth: int) -> None:
        self._redis = redis_client
        self._celery = celery_app
        self._queue = queue
        self._task = task
        self._max_depth = max_depth

    def depth(self) -> int:
        return int(self._redis.llen(self._queue))

    def admit(self) -> None:
        try:
            depth = self.depth()
        except Exception as exc:
            raise QueueUnavailable("the job queue (Redis) is unavailable; nothing was stored, retry shortly") from exc
        if depth >= self._max_depth:
            raise RateLimited(f"{depth} jobs are waiting; retry later", retry_after=30.0, queue_depth=depth)

    def enqueue(self, job_id: str) -> None:
        self._celery.send_task(self._task, args=[[job_id]], queue=self._queue)

    def sender(self, task: str, queue: str) -> Callable[[str], None]:
        """An enqueue function for another task (sync, eval, reindex): ids only, after the commit."""

        def send(job_id: str) -> None:
            self._celery.send_task(task, args=[[job_id]], queue=queue)

        return send


def thread_admission(depth: Callable[[], int], max_depth: int) -> Callable[[], None]:
    def admit() -> None:
        n = depth()
        if n >= max_depth:
            raise RateLimited(f"{n} jobs are waiting; retry later", retry_after=10.0, queue_depth=n)

    return admit


class RecoverySweep:
    """Re-enqueues jobs of every kind it has a route for (ingest, sync, eval, reindex, unindex)
    that sat unfinished longer than `stale_after_s`: their message was lost (Redis restarted
    without persistence, enqueue failed after the commit) or their worker died. Tasks are
    idempotent, so a job that was merely slow is harmlessly done twice. A running job touches
    its row as it progresses, so only a silent one counts as stale."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        routes: dict[str, Callable[[str], None]],
        interval_s: float,
        stale_after_s: float,
    ) -> None:
        self._sessions = sessions
        self._routes = routes
        self._interval = interval_s
        self._stale = timedelta(seconds=stale_after_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cairn-recovery-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sweep(self) -> int:
        cutoff = utcnow() - self._stale
        with self._sessions.begin() as s:
            rows = s.execute(
                select(Job.id, Job.kind)
                .where(Job.kind.in_(list(self._routes)), Job.state.in_(ACTIVE), Job.updated_at < cutoff)
                .order_by(Job.created_at)
            ).all()
            ids = [job_id for job_id, _ in rows]
            if ids:
                s.execute(update(Job).where(Job.id.in_(ids)).values(updated_at=utcnow()))
        sent = 0
        for job_id, kind in rows:
            try:
                self._routes[kind](job_id)
                sent += 1
            except Exception:
                log.warning("recovery sweep: queue unavailable; %d jobs wait for the next sweep", len(ids) - sent)
                break
        if sent:
            log.info("recovery sweep re-enqueued %d jobs", sent)
        return sent

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sweep()
            except Exception:
                log.exception("recovery sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
