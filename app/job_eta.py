"""Progress and ETA of jobs, from observed throughput.

Whoever runs a batch of jobs (a worker thread, a Celery task) announces it when it starts and,
when it ends, records one sample: how many jobs, when it started, how long it took. Throughput
is jobs done per second of *busy time* — the union of the recent samples' intervals — so
parallel workers (overlapping intervals) raise it and idle gaps do not lower it; worker count
is thus measured, not configured. An ingest job's ETA is the work up to and including it (its
queue position, in jobs) less what the batches now running have done so far (throughput times
how long they have run, at most their size), divided by that throughput: a job inside a long
batch sees its ETA count down rather than stand still until the whole batch lands. Syncs wait
for their ingest jobs, so theirs is that of their last pending one; reindex and evaluation runs
extrapolate their own done/total over elapsed time.
`eta_s` is null when there is nothing to go on (no recent sample, no progress yet).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import Job

_log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class Batch:
    kind: str
    token: str
    jobs: int
    started: float  # unix seconds


class ThroughputLog(Protocol):
    def begin(self, kind: str, jobs: int) -> Batch:
        """A batch starts running: it counts as in flight until `end`."""

    def end(self, batch: Batch, ok: bool = True) -> None:
        """It stopped; only a batch that completed (`ok`) becomes a throughput sample."""

    def samples(self, kind: str) -> list[Sample]: ...

    def running(self, kind: str) -> list[Batch]: ...


class MemoryThroughput:
    """In-process jobs: the samples live in the API process that runs them."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[Sample]] = {}
        self._running: dict[str, Batch] = {}
        self._lock = threading.Lock()

    def begin(self, kind: str, jobs: int) -> Batch:
        batch = Batch(kind, secrets.token_hex(8), jobs, time.time())
        with self._lock:
            self._running[batch.token] = batch
        return batch

    def end(self, batch: Batch, ok: bool = True) -> None:
        with self._lock:
            self._running.pop(batch.token, None)
            if ok:
                sample = Sample(batch.jobs, batch.started, time.time() - batch.started)
                self._samples.setdefault(batch.kind, deque(maxlen=_KEEP)).append(sample)

    def samples(self, kind: str) -> list[Sample]:
        with self._lock:
            return list(self._samples.get(kind, ()))

    def running(self, kind: str) -> list[Batch]:
        with self._lock:
            return [b for b in self._running.values() if b.kind == kind]


class RedisThroughput:
    """Celery workers record into a capped Redis list per kind; the API reads it."""

    def __init__(self, client: Any) -> None:
        self._redis = client

    def begin(self, kind: str, jobs: int) -> Batch:
        batch = Batch(kind, secrets.token_hex(8), jobs, time.time())
        key = f"cairn:running:{kind}"
        pipe = self._redis.pipeline()
        pipe.hset(key, batch.token, json.dumps([jobs, batch.started]))
        pipe.expire(key, int(WINDOW_S))  # a killed worker's entry does not outlive the window
        pipe.execute()
        return batch

    def end(self, batch: Batch, ok: bool = True) -> None:
        pipe = self._redis.pipeline()
        pipe.hdel(f"cairn:running:{batch.kind}", batch.token)
        if ok:
            key = f"cairn:throughput:{batch.kind}"
            pipe.lpush(key, json.dumps([batch.jobs, batch.started, time.time() - batch.started]))
            pipe.ltrim(key, 0, _KEEP - 1)
        pipe.execute()

    def samples(self, kind: str) -> list[Sample]:
        try:
            raw = self._redis.lrange(f"cairn:throughput:{kind}", 0, _KEEP - 1)
        except Exception:  # an ETA is never worth failing a status read for
            return []
        return [Sample(*json.loads(r)) for r in raw]

    def running(self, kind: str) -> list[Batch]:
        try:
            raw = self._redis.hgetall(f"cairn:running:{kind}")
        except Exception:
            return []
        out = []
        for token, value in raw.items():
            jobs, started = json.loads(value)
            out.append(Batch(kind, token.decode() if isinstance(token, bytes) else token, jobs, started))
        return out


def run_tracked(log: ThroughputLog | None, kind: str, ids: list[str], run: Callable[[list[str]], None]) -> None:
    """Run one batch, announced to `log` while it runs and sampled there if it completes. The
    batch's own exception propagates; a failing log (Redis down) only costs the ETA."""
    batch = None
    if log is not None and ids:
        try:
            batch = log.begin(kind, len(ids))
        except Exception:
            _log.warning("could not record %s throughput", kind, exc_info=True)
    ok = False
    try:
        run(ids)
        ok = True
    finally:
        if log is not None and batch is not None:
            try:
                log.end(batch, ok)
            except Exception:
                _log.warning("could not record %s throughput", kind, exc_info=True)


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


def done_in_flight(running: list[Batch], rate: float | None, now: float, window_s: float = WINDOW_S) -> float:
    """Jobs the running batches have likely finished by now: throughput times how long they have
    been running together (the union of their intervals, which all end now), at most their size.
    A batch older than the window is taken for a dead worker's leftover and ignored."""
    live = [b for b in running if now - b.started <= window_s]
    if not live or not rate:
        return 0.0
    return min(rate * max(now - min(b.started for b in live), 0.0), float(sum(b.jobs for b in live)))


class JobEta:
    def __init__(self, log: ThroughputLog) -> None:
        self.log = log

    def for_jobs(self, s: Session, jobs: list[Job]) -> dict[str, Progress]:
        now = time.time()
        out: dict[str, Progress] = {}
        ingest_rate = throughput(self.log.samples("ingest"), now)
        queue: list[float] | None = None
        in_flight = 0.0
        for job in jobs:
            if job.state not in ACTIVE:
                out[job.id] = _finished(s, job)
            elif job.kind in ("ingest", "sync"):
                if queue is None:
                    queue = _ingest_queue(s)
                    in_flight = done_in_flight(self.log.running("ingest"), ingest_rate, now)
                if job.kind == "ingest":
                    ahead = bisect.bisect_right(queue, _ts(job.created_at))
                    out[job.id] = Progress(job.progress, None, None, _eta(max(ahead, 1), in_flight, ingest_rate))
                else:
                    out[job.id] = _sync(s, job, queue, in_flight, ingest_rate)
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


def _eta(jobs: int, done: float, rate: float | None) -> float | None:
    """Seconds for `jobs` queued up to and including ours, `done` of which running batches have
    likely finished; an overdue batch leaves half a job's time, never zero (zero means landed)."""
    return max(round((jobs - done) / rate, 1), round(0.5 / rate, 1), 0.1) if rate else None


def _ingest_queue(s: Session) -> list[float]:
    """Creation times of every active ingest job (all tenants share the queue), sorted."""
    rows = s.scalars(select(Job.created_at).where(Job.kind == "ingest", Job.state.in_(ACTIVE))).all()
    return sorted(_ts(r) for r in rows)


def _sync(s: Session, job: Job, queue: list[float], in_flight: float, rate: float | None) -> Progress:
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
    eta = 0.0 if pending is None else _eta(max(bisect.bisect_right(queue, _ts(pending)), 1), in_flight, rate)
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
