"""Running an evaluation job: wait for the dataset's documents, run every query under every
configuration as the principal who started the run, score, store, compare with the baseline.

Rows are written once, at the end, so a run interrupted by shutdown leaves nothing half-stored:
it goes back to `queued` and the next start runs it again (`recover`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.jobs import requeue_active, set_job
from app.services import eval_scoring as scoring
from app.services.eval_datasets import EvalDatasetService, doc_prefix
from app.services.eval_search import ConfigSearch, EvalConfig
from core.errors import CairnError
from core.models import Principal, SearchFilters
from core.tables import Job, utcnow
from core.tables_evals import EvalDataset, EvalQueryResult, EvalRun

log = logging.getLogger(__name__)
_PROGRESS_EVERY_S = 0.5
_TOUCH_EVERY_S = 10.0  # while waiting for the dataset's documents


class _Stopped(Exception):
    """Shutdown while a run was in progress: it is put back in the queue, not failed."""


class EvalJobs:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        datasets: EvalDatasetService,
        search: ConfigSearch,
        enqueue: Callable[[str], None],
        stale_after_s: float = 900.0,
    ) -> None:
        self._sessions = sessions
        self._datasets = datasets
        self._search = search
        self._enqueue = enqueue
        self._stale = timedelta(seconds=stale_after_s)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def recover(self) -> int:
        return requeue_active(self._sessions, EvalRun, self._enqueue)

    def run_jobs(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            try:
                self.run(run_id)
            except _Stopped:
                self._set(run_id, "queued", progress=0.0)
            except CairnError as exc:
                self._fail(run_id, exc.message)
            except Exception:
                log.exception("evaluation run %s crashed", run_id)
                self._fail(run_id, "internal error while evaluating; see the server log")

    def fail_jobs(self, run_ids: list[str], reason: str) -> None:
        """A Celery worker's retries ran out (the database kept failing)."""
        for run_id in run_ids:
            self._fail(run_id, reason)

    def run(self, run_id: str) -> None:
        with self._sessions.begin() as s:
            run = s.get(EvalRun, run_id, with_for_update=True)
            if run is None or run.status in ("succeeded", "failed"):
                return  # idempotent: a redelivered job for a finished run does nothing
            job = s.get(Job, run_id)
            if run.status == "running" and job is not None and _aware(job.updated_at) > utcnow() - self._stale:
                return  # running elsewhere (a redelivery or a re-send of a slow run): one at a time
            dataset = s.get(EvalDataset, run.dataset_id)
            if dataset is not None:
                run.status = "running"  # claimed, in the same transaction as the check
                set_job(s, run_id, "running", progress=0.0)
        if dataset is None:
            self._fail(run_id, "the dataset was deleted before the run started")
            return
        started = time.perf_counter()
        self._wait_for_documents(run_id, dataset)
        principal = Principal.model_validate(run.principal)
        configs = [EvalConfig.model_validate(c) for c in run.configs]
        filters = (
            SearchFilters(source=[dataset.source]) if dataset.source else SearchFilters.model_validate(dataset.filters)
        )
        to_dataset_id = _id_mapper(dataset)
        query_ids = list(dataset.qrels)[: run.max_queries] if run.max_queries else list(dataset.qrels)
        qrels = {q: {d: int(g) for d, g in dataset.qrels[q].items()} for q in query_ids}
        ks, depth = list(run.ks), max(run.ks)
        rows: list[EvalQueryResult] = []
        summary: dict[str, dict[str, float]] = {}
        total, done, last = len(configs) * len(query_ids), 0, 0.0
        for config in configs:
            ranked_by_query: dict[str, list[str]] = {}
            latencies: list[float] = []
            for qid in query_ids:
                if self._stop.is_set():
                    raise _Stopped
                t0 = time.perf_counter()
                ranked = [to_dataset_id(d) for d in self._search.rank(
                    principal, dataset.queries.get(qid, ""), config, filters, depth
                )]
                elapsed = time.perf_counter() - t0
                metrics.observe_search(elapsed, source="eval")
                latencies.append(elapsed * 1000)
                ranked_by_query[qid] = ranked
                rows.append(EvalQueryResult(
                    run_id=run_id, config=config.name, query_id=qid, ranked=ranked,
                    metrics=scoring.score_query(ranked, qrels[qid], ks), latency_ms=round(elapsed * 1000, 3),
                ))
                done += 1
                if time.monotonic() - last > _PROGRESS_EVERY_S:
                    last = time.monotonic()
                    self._set(run_id, "running", progress=round(done / max(total, 1), 4))
            summary[config.name] = scoring.summarize(ranked_by_query, qrels, ks, latencies)
        self._finish(run_id, dataset, summary, rows, time.perf_counter() - started)

    def _wait_for_documents(self, run_id: str, dataset: EvalDataset) -> None:
        """A collection's documents are ingested by the ingest jobs; score only once none is
        still queued (failed documents simply cannot be found, which the scores then show).
        The job row is touched meanwhile, so a long wait never looks like a dead run."""
        touched = time.monotonic()
        while self._datasets.document_states(dataset).get("queued", 0) > 0:
            if self._stop.wait(0.2):
                raise _Stopped
            if time.monotonic() - touched >= _TOUCH_EVERY_S:
                touched = time.monotonic()
                with self._sessions.begin() as s:
                    s.execute(update(Job).where(Job.id == run_id).values(updated_at=utcnow()))

    def _finish(
        self,
        run_id: str,
        dataset: EvalDataset,
        summary: dict[str, dict[str, float]],
        rows: list[EvalQueryResult],
        duration_s: float,
    ) -> None:
        with self._sessions.begin() as s:
            run = s.get(EvalRun, run_id)
            if run is None or run.status == "succeeded":
                return  # a redelivered duplicate finished second: the first one's rows stand
            baseline = s.scalars(
                select(EvalRun).where(
                    EvalRun.dataset_id == dataset.id, EvalRun.is_baseline.is_(True), EvalRun.id != run_id
                )
            ).first()
            regressions: list[dict[str, Any]] = []
            if baseline is not None:
                regressions = scoring.find_regressions(baseline.summary, summary, run.regression_threshold)
                run.baseline_id = baseline.id
            s.add_all(rows)
            run.summary, run.regressions = summary, regressions
            run.status, run.duration_s, run.finished_at = "succeeded", round(duration_s, 3), utcnow()
            set_job(s, run_id, "succeeded", progress=1.0, finished=True)
        metrics.record_eval_run(dataset.id, summary, duration_s, "succeeded", regressed=bool(regressions))
        if regressions:
            log.warning("evaluation run %s regressed against baseline %s: %s", run_id, run.baseline_id, regressions)

    def _set(self, run_id: str, status: str, progress: float) -> None:
        with self._sessions.begin() as s:
            run = s.get(EvalRun, run_id)
            if run is not None:
                run.status = status
            set_job(s, run_id, status, progress=progress)

    def _fail(self, run_id: str, reason: str) -> None:
        with self._sessions.begin() as s:
            run = s.get(EvalRun, run_id)
            if run is not None:
                run.status, run.error, run.finished_at = "failed", reason, utcnow()
            set_job(s, run_id, "failed", error=reason, finished=True)
        metrics.record_eval_run(None, {}, 0.0, "failed", regressed=False)


def _id_mapper(dataset: EvalDataset) -> Callable[[str], str]:
    """Cairn document id -> the dataset's own id (BEIR ids for a collection)."""
    if dataset.source is None:
        return lambda doc_id: doc_id
    prefix = doc_prefix(dataset.id)
    return lambda doc_id: doc_id.removeprefix(prefix)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
