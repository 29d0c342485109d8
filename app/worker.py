"""Celery execution of background jobs (scale-out mode, `CAIRN_REDIS_URL` set).

Two queues, because a sync waits for the ingest jobs it submits and must never hold the slot
those jobs need:

* `cairn.ingest` — task `cairn.ingest`; one task at a time per process (`--pool=solo`): torch
  already uses every core.
* `cairn.jobs` — tasks `cairn.sync`, `cairn.eval`, `cairn.reindex`; a thread pool (mostly
  waiting on sources, SQL and the ingest queue).

`cairn worker` consumes both (the jobs consumer in a child process); `--queues` splits them.
Every task is thin (ids in, one service call, status in SQL), idempotent (a finished job is
skipped), acknowledged late and rejected when its worker dies, so a killed worker's job is
delivered again. Infrastructure errors retry with exponential backoff and jitter; when retries
run out the job is `failed` with the reason and can be retried from the API.

Who touches the index: with a Qdrant server (`CAIRN_QDRANT_URL`) workers read and write it.
The embedded engine admits one process per data directory — the API — so a worker hands
embedded versions and deletions to it through a Redis list (`app.handoff`), and evaluation and
reindex jobs, which need the whole index, run in the API process (the API never sends them here).
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery

from app.handoff import push_ready, push_unindex
from app.job_eta import RedisThroughput, run_tracked
from core.errors import CairnError
from core.settings import Settings

log = logging.getLogger(__name__)
QUEUE = "cairn.ingest"
TASK = "cairn.ingest"
JOBS_QUEUE = "cairn.jobs"
SYNC_TASK = "cairn.sync"
EVAL_TASK = "cairn.eval"
REINDEX_TASK = "cairn.reindex"
REINDEX_TIME_LIMIT_S = 24 * 3600


def make_celery(settings: Settings) -> Celery:
    """A Celery app of its own per container: an app's broker connections are fixed once used,
    so a shared module-level app would keep talking to the first broker it saw."""
    app = Celery("cairn", set_as_current=False)
    sync_limit = int(settings.connectors.sync_timeout_s) + 300
    limits = {
        TASK: settings.jobs.task_time_limit_s,
        SYNC_TASK: sync_limit,
        EVAL_TASK: settings.jobs.task_time_limit_s,
        REINDEX_TASK: REINDEX_TIME_LIMIT_S,
    }
    app.conf.update(
        broker_url=settings.redis_url,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.jobs.task_time_limit_s,
        task_soft_time_limit=max(5, settings.jobs.task_time_limit_s - 30),
        broker_transport_options={"visibility_timeout": visibility_timeout_s(settings, limits)},
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        worker_hijack_root_logger=False,
        task_ignore_result=True,
    )
    app.conf.cairn_settings = settings
    common: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}
    for name, fn in ((TASK, ingest), (SYNC_TASK, sync), (EVAL_TASK, evaluate), (REINDEX_TASK, reindex)):
        app.task(name=name, time_limit=limits[name], soft_time_limit=max(5, limits[name] - 30), **common)(fn)
    return app


def visibility_timeout_s(settings: Settings, limits: dict[str, int]) -> int:
    """Redis redelivers a task not acknowledged within the visibility timeout to another worker,
    even while the first one is still running it (acks are late). So it outlasts the longest task
    time limit (plus 5 min), whatever `CAIRN_JOBS__VISIBILITY_TIMEOUT_S` says; a task lost with its
    worker is re-sent sooner by the API's recovery sweep (`CAIRN_JOBS__STALE_AFTER_S`). The 24 h
    reindex limit is left out (it would hold lost ingest tasks for a day): a redelivered reindex
    finds its run claimed by a live worker and does nothing."""
    longest = max(limit for task, limit in limits.items() if task != REINDEX_TASK)
    return max(settings.jobs.visibility_timeout_s, longest + 300)


class WorkerContext:
    """What a worker process needs, built once per process and only as far as its tasks need:
    a sync needs SQL and the queue, not the model; ingest, eval and reindex load the model."""

    _instance: WorkerContext | None = None
    _lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        import redis

        from app.container import build_celery_dispatcher
        from app.db import make_engine, make_session_factory
        from app.services.blobs import BlobStore
        from app.services.documents import DocumentService
        from app.services.pii_vault import build_pii_vault
        from ingestion.chunking import TokenChunker
        from ingestion.parsing import UnstructuredParser
        from ingestion.pipeline import IngestionPipeline
        from retrieval.embedder import SentenceTransformerEmbedder
        from retrieval.sparse import Bm25SparseEncoder

        self.settings = settings
        self.sessions = make_session_factory(make_engine(settings.sql_url))
        self.embedder = SentenceTransformerEmbedder(
            settings.embedding.model_path, settings.embedding.precision, settings.embedding.batch_size
        )
        self.parser = UnstructuredParser()
        self.sparse = Bm25SparseEncoder()
        self.pipeline = IngestionPipeline(
            self.parser,
            TokenChunker(self.embedder, settings.chunking.max_tokens, settings.chunking.overlap_tokens),
            self.embedder,
            self.sparse,
            redactor=build_pii_vault(settings, self.sessions),  # the same PII policy as the API
        )
        self.index = None
        if settings.qdrant_url:
            from app.container import build_index

            self.index = build_index(settings, dim=384)
            self.index.warm_up()
        self.redis = redis.Redis.from_url(settings.redis_url or "", socket_timeout=10)
        self.throughput = RedisThroughput(self.redis)
        self.blobs = BlobStore(settings.data_dir / "blobs")
        dispatcher = build_celery_dispatcher(settings, self.redis)
        self.documents = DocumentService(
            self.sessions, self.blobs, self.pipeline, self.index, dispatcher.enqueue, dispatcher.admit,
            unindex=None if self.index is not None else (lambda job_id: push_unindex(self.redis, job_id)),
        )
        self.publish = None if self.index is not None else (lambda ready: push_ready(self.redis, ready))
        self._warm = False
        self._parts: dict[str, Any] = {}
        self._parts_lock = threading.Lock()

    @classmethod
    def get(cls, settings: Settings) -> WorkerContext:
        with cls._lock:
            if cls._instance is None:
                cls._instance = WorkerContext(settings)
            return cls._instance

    def warm_model(self) -> None:
        with self._parts_lock:
            if not self._warm:
                self.embedder.warm_up()
                self.parser.warm_up()
                self._warm = True

    def part(self, name: str, build: Callable[[], Any]) -> Any:
        with self._parts_lock:
            if name not in self._parts:
                self._parts[name] = build()
            return self._parts[name]

    def syncs(self) -> Any:
        def build() -> Any:
            from app.services.connector_sync import ConnectorSyncRunner
            from ingestion.connectors import AccessPolicy

            cfg = self.settings.connectors
            policy = AccessPolicy(tuple(cfg.filesystem_roots), tuple(cfg.allowed_hosts),
                                  self.settings.ingestion.max_upload_bytes)
            return ConnectorSyncRunner(self.sessions, self.documents, policy, cfg.sync_timeout_s,
                                       stale_after_s=self.settings.jobs.stale_after_s)

        return self.part("syncs", build)

    def _need_index(self, what: str) -> Any:
        if self.index is None:
            raise CairnError(f"{what} needs the index; with the embedded engine only the API process runs it")
        return self.index

    def evals(self) -> Any:
        def build() -> Any:
            from app.container import build_retrieval
            from app.services.eval_datasets import EvalDatasetService
            from app.services.eval_jobs import EvalJobs
            from app.services.eval_search import ConfigSearch
            from retrieval.search import HybridSearcher

            index = self._need_index("an evaluation run")
            search_cfg = self.settings.search
            searcher = HybridSearcher(self.embedder, self.sparse, index, prefetch_limit=search_cfg.prefetch_limit,
                                      rrf_k=search_cfg.rrf_k)
            retrieval = build_retrieval(search_cfg, searcher, self.embedder.count_tokens)
            retrieval.warm_up()
            search = ConfigSearch(searcher, lambda: retrieval)
            return EvalJobs(self.sessions, EvalDatasetService(self.sessions, self.documents), search,
                            lambda _id: None, stale_after_s=self.settings.jobs.stale_after_s)

        self.warm_model()
        return self.part("evals", build)

    def reindexer(self) -> Any:
        def build() -> Any:
            from app.container import build_generations
            from app.services.reindex import ReindexService

            index = self._need_index("a reindex")
            return ReindexService(self.sessions, self.blobs, self.pipeline, build_generations(self.settings, index),
                                  index, lambda _id: None, stale_after_s=self.settings.jobs.stale_after_s)

        self.warm_model()
        return self.part("reindex", build)


def _run(task: Any, what: str, ids: list[str], run: Callable[[list[str]], None],
         give_up: Callable[[list[str], str], None]) -> None:
    """Run a service call; on infrastructure trouble retry with backoff and jitter, and when
    the retries run out record the job as failed with the reason (retryable from the API)."""
    settings: Settings = task.app.conf.cairn_settings
    try:
        run(ids)
    except Exception as exc:
        retries = task.request.retries
        if retries >= settings.jobs.max_retries:
            reason = exc.message if isinstance(exc, CairnError) else "a dependency kept failing"
            give_up(ids, f"gave up after {retries} retries: {reason}")
            log.exception("%s %s gave up", what, ids)
            return
        countdown = min(60.0, 2.0**retries) * (0.5 + random.random())
        raise task.retry(exc=exc, countdown=countdown, max_retries=settings.jobs.max_retries) from exc


def ingest(self: Any, job_ids: list[str]) -> None:
    """Task `cairn.ingest` (registered by make_celery)."""
    ctx = WorkerContext.get(self.app.conf.cairn_settings)
    ctx.warm_model()

    def run(ids: list[str]) -> None:
        run_tracked(ctx.throughput, "ingest", ids, lambda batch: ctx.documents.run_jobs(batch, publish=ctx.publish))

    _run(self, "ingest", job_ids, run, ctx.documents.fail_jobs)


def sync(self: Any, sync_ids: list[str]) -> None:
    """Task `cairn.sync`: a connector sync; its documents go through `cairn.ingest` like uploads."""
    ctx = WorkerContext.get(self.app.conf.cairn_settings)
    runner = ctx.syncs()
    _run(self, "sync", sync_ids, runner.run_jobs, runner.fail_jobs)


def evaluate(self: Any, run_ids: list[str]) -> None:
    """Task `cairn.eval` (Qdrant server deployments only)."""
    ctx = WorkerContext.get(self.app.conf.cairn_settings)
    jobs = ctx.evals()
    _run(self, "eval", run_ids, jobs.run_jobs, jobs.fail_jobs)


def reindex(self: Any, run_ids: list[str]) -> None:
    """Task `cairn.reindex` (Qdrant server deployments only)."""
    ctx = WorkerContext.get(self.app.conf.cairn_settings)
    service = ctx.reindexer()
    _run(self, "reindex", run_ids, service.run_jobs, service.fail_jobs)


def run_worker(settings: Settings, queues: tuple[str, ...] = ("ingest", "jobs"), concurrency: int = 4) -> None:
    """`cairn worker`: the ingest consumer in this process (solo pool, model loaded first) and,
    when both queues are asked for, the jobs consumer in a child process (thread pool)."""
    child: subprocess.Popen[bytes] | None = None
    if "ingest" in queues and "jobs" in queues:
        child = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--queues", "jobs",
                                  "--concurrency", str(concurrency)], env=os.environ.copy())
    try:
        app = make_celery(settings)
        if "ingest" in queues:
            if settings.jobs.worker_torch_threads:
                import torch

                torch.set_num_threads(settings.jobs.worker_torch_threads)
            WorkerContext.get(settings).warm_model()  # load the model before taking the first task
            from app.cli import freeze_startup_objects

            freeze_startup_objects()
            argv = ["worker", "--pool=solo", "-Q", QUEUE, "--hostname=cairn-ingest@%h"]
        else:
            argv = ["worker", "--pool=threads", f"--concurrency={concurrency}", "-Q", JOBS_QUEUE,
                    "--hostname=cairn-jobs@%h"]
        app.worker_main([*argv, "--loglevel=INFO", "--without-gossip", "--without-mingle"])
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait(30)
