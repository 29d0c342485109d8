"""Progress and ETA of jobs, from observed throughput.

Whoever runs a batch of jobs (a worker thread, a Celery task) records one sample: how many jobs,
when it started, how long it took. Throughput is jobs done per second of *busy time* — the
union of the recent samples' intervals — so parallel workers (overlapping intervals) raise it
and idle gaps do not lower it; worker count is thus measured, not configured. An ingest job's
ETA is the number of active ingest jobs up to and including it (its queue position) divided by
that throughput. Syncs wait for their ingest jobs, so theirs is that of their last pending
one; reindex and evaluation runs extrapolate their own done/total over elapsed time.
`eta_s` is null when there is nothing to go on (no recent sample, no progress yet).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import Job

ACTIVE = ("queued", "parsing", "chunking", "embedding", "running")
WINDOW_S = 900.0
_KEEP = 200


@dataclass(frozen=True)
class Sample:
    jobs: int
    started: float  # unix seconds
    seconds: float


@dataclass(frozen=True)
class Progress:
    progress: float
    done: int | None
    total: int | None
    eta_s: float | None


class ThroughputLog(Protocol):
    def record(self, kind: str, jobs: int, started: float, seconds: float) -> None: ...

    def samples(self, kind: str) -> list[Sample]: ...


class MemoryThroughput:
    """In-process jobs: the samples live in the API process that runs them."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[Sample]] = {}
        self._lock = threading.Lock()

    def record(self, kind: str, jobs: int, started: float, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(kind, deque(maxlen=_KEEP)).append(Sample(jobs, started, seconds))

    def samples(self, kind: str) -> list[Sample]:
        with self._lock:
            return list(self._samples.get(kind, ()))


class RedisThroughput:
    """Celery workers record into a capped Redis list per kind; the API reads it."""

    def __init__(self, client: Any) -> None:
        self._redis = client

    def record(self, kind: str, jobs: int, started: float, seconds: float) -> None:
        key = f"cairn:throughput:{kind}"
        self._redis.lpush(key, json.dumps([jobs, started, seconds]))
        self._redis.ltrim(key, 0, _KEEP - 1)

    def samples(self, kind: str) -> list[Sample]:
        try:
            raw = self._redis.lrange(f"cairn:throughput:{kind}", 0, _KEEP - 1)
        except Exception:  # an ETA is never worth failing a status read for
            return []
        return [Sample(*json.loads(r)) for r in raw]


def throughput(samples: list[Sample], now: float, window_s: float = WINDOW_S) -> float | None:
    """Jobs per busy second over the recent window; None with fewer than two jobs seen."""
    recent = sorted((s for s in samples if now - (s.started + s.seconds) <= window_s), key=lambda s: s.started)
    if sum(s.jobs for s in recent) < 2:
        return None
    busy, end = 0.0, float("-inf")
    for s in recent:
        start, stop = max(s.started, end), s.started + s.seconds
        if stop > start:
            busy += stop - start
        end = max(end, stop)
    return sum(s.jobs for s in recent) / busy if busy > 0 else None


class JobEta:
    def __init__(self, log: ThroughputLog) -> None:
        self.log = log

    def for_jobs(self, s: Session, jobs: list[Job]) -> dict[str, Progress]:
        now = time.time()
        out: dict[str, Progress] = {}
        ingest_rate = throughput(self.log.samples("ingest"), now)
        queue: list[float] | None = None
        for job in jobs:
            if job.state not in ACTIVE:
                out[job.id] = _finished(s, job)
            elif job.kind == "ingest":
                queue = queue if queue is not None else _ingest_queue(s)
                ahead = bisect.bisect_right(queue, _ts(job.created_at))
                out[job.id] = Progress(job.progress, None, None, _eta(max(ahead, 1), ingest_rate))
            elif job.kind == "sync":
                queue = queue if queue is not None else _ingest_queue(s)
                out[job.id] = _sync(s, job, queue, ingest_rate)
            elif job.kind == "reindex":
                out[job.id] = _reindex(s, job, now)
            else:
                out[job.id] = _extrapolate(job, now)
        return out


def _finished(s: Session, job: Job) -> Progress:
    eta = 0.0 if job.state in ("indexed", "succeeded") else None
    if job.kind == "reindex":
        return dataclasses.replace(_reindex(s, job, time.time()), eta_s=eta)
    if job.kind == "sync":
        from core.tables_connectors import ConnectorSync

        sync = s.get(ConnectorSync, job.id)
        if sync is not None:
            return Progress(job.progress, sync.indexed + sync.failed + sync.unchanged, sync.seen, eta)
    return Progress(job.progress, None, None, eta)


def _ts(value: datetime) -> float:
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).timestamp()


def _eta(jobs: int, rate: float | None) -> float | None:
    return round(jobs / rate, 1) if rate else None


def _ingest_queue(s: Session) -> list[float]:
    """Creation times of every active ingest job (all tenants share the queue), sorted."""
    rows = s.scalars(select(Job.created_at).where(Job.kind == "ingest", Job.state.in_(ACTIVE))).all()
    return sorted(_ts(r) for r in rows)


def _sync(s: Session, job: Job, queue: list[float], rate: float | None) -> Progress:
    from core.tables_connectors import ConnectorItem, ConnectorSync

    sync = s.get(ConnectorSync, job.id)
    if sync is None:
        return Progress(job.progress, None, None, None)
    done = sync.indexed + sync.failed + sync.unchanged
    total = sync.seen if sync.status == "running" and job.progress >= 0.5 else None  # known once read
    pending = s.scalar(
        select(Job.created_at)
        .where(Job.id.in_(select(ConnectorItem.job_id).where(
            ConnectorItem.connector_id == sync.connector_id, ConnectorItem.status == "pending")),
            Job.state.in_(ACTIVE))
        .order_by(Job.created_at.desc()).limit(1)
    )
    if total is None:
        return Progress(job.progress, done, None, None)
    eta = 0.0 if pending is None else _eta(max(bisect.bisect_right(queue, _ts(pending)), 1), rate)
    return Progress(job.progress, done, total, eta)


def _reindex(s: Session, job: Job, now: float) -> Progress:
    from core.tables_reindex import ReindexRun

    run = s.get(ReindexRun, job.id)
    if run is None or run.started_at is None or not run.total_docs:
        return Progress(job.progress, None, None, None)
    eta = None
    if run.done_docs:
        elapsed = now - _ts(run.started_at)
        eta = round(elapsed * (run.total_docs - run.done_docs) / run.done_docs, 1)
    return Progress(job.progress, run.done_docs, run.total_docs, eta)


def _extrapolate(job: Job, now: float) -> Progress:
    """Evaluation runs: progress is queries scored / queries to score."""
    p = job.progress
    if job.state != "running" or p < 0.02:
        return Progress(p, None, None, None)
    elapsed = now - _ts(job.created_at)
    return Progress(p, None, None, round(elapsed * (1 - p) / p, 1))
