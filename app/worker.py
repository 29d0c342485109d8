"""Celery execution of ingest jobs (scale-out mode, `CAIRN_REDIS_URL` set).

Tasks are thin: job ids in, `DocumentService.run_jobs`, status in SQL. They are idempotent
(a finished job is skipped; chunk ids are deterministic; going live is a conditional version
update), acknowledged late and rejected when their worker dies, so a killed worker's job is
delivered again and indexed exactly once.

Who writes the index: with a Qdrant server (`CAIRN_QDRANT_URL`) the worker does. The embedded
engine admits one process per data directory — the API — so a worker hands each embedded
version to it through a Redis list (`READY_KEY`), and the API's `IndexApplier` makes it live.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from celery import Celery

from app.handoff import push_ready
from core.errors import CairnError
from core.settings import Settings

log = logging.getLogger(__name__)
QUEUE = "cairn.ingest"
TASK = "cairn.ingest"



def make_celery(settings: Settings) -> Celery:
    """A Celery app of its own per container: an app's broker connections are fixed once used,
    so a shared module-level app would keep talking to the first broker it saw."""
    app = Celery("cairn", set_as_current=False)
    app.conf.update(
        broker_url=settings.redis_url,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.jobs.task_time_limit_s,
        task_soft_time_limit=max(5, settings.jobs.task_time_limit_s - 30),
        broker_transport_options={"visibility_timeout": settings.jobs.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        worker_hijack_root_logger=False,
        task_ignore_result=True,
    )
    app.conf.cairn_settings = settings
    app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True)(ingest)
    return app


class WorkerContext:
    """What a worker process needs, loaded once per process: SQL, stored originals, the
    pipeline (model included) and, only with a Qdrant server, the index."""

    _instance: WorkerContext | None = None
    _lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        import redis

        from app.db import make_engine, make_session_factory
        from app.services.blobs import BlobStore
        from app.services.documents import DocumentService
        from ingestion.chunking import TokenChunker
        from ingestion.parsing import UnstructuredParser
        from ingestion.pipeline import IngestionPipeline
        from retrieval.embedder import SentenceTransformerEmbedder
        from retrieval.sparse import Bm25SparseEncoder

        self.settings = settings
        sessions = make_session_factory(make_engine(settings.sql_url))
        embedder = SentenceTransformerEmbedder(
            settings.embedding.model_path, settings.embedding.precision, settings.embedding.batch_size
        )
        parser = UnstructuredParser()
        pipeline = IngestionPipeline(
            parser,
            TokenChunker(embedder, settings.chunking.max_tokens, settings.chunking.overlap_tokens),
            embedder,
            Bm25SparseEncoder(),
        )
        index = None
        if settings.qdrant_url:
            from app.container import build_index

            index = build_index(settings, dim=384)
            index.warm_up()
        self.redis = redis.Redis.from_url(settings.redis_url or "", socket_timeout=10)
        self.documents = DocumentService(
            sessions, BlobStore(settings.data_dir / "blobs"), pipeline, index, enqueue=lambda _job: None
        )
        self.publish = None if index is not None else (lambda ready: push_ready(self.redis, ready))
        embedder.warm_up()
        parser.warm_up()

    @classmethod
    def get(cls, settings: Settings) -> WorkerContext:
        with cls._lock:
            if cls._instance is None:
                cls._instance = WorkerContext(settings)
            return cls._instance


def ingest(self: Any, job_ids: list[str]) -> None:
    """Task `cairn.ingest` (registered by make_celery)."""
    ctx = WorkerContext.get(self.app.conf.cairn_settings)
    try:
        ctx.documents.run_jobs(job_ids, publish=ctx.publish)
    except Exception as exc:  # infrastructure trouble (SQL, Redis): try again later
        retries = self.request.retries
        if retries >= ctx.settings.jobs.max_retries:
            reason = exc.message if isinstance(exc, CairnError) else "a dependency kept failing"
            ctx.documents.fail_jobs(job_ids, f"gave up after {retries} retries: {reason}")
            log.exception("ingest %s gave up", job_ids)
            return
        countdown = min(60.0, 2.0**retries) * (0.5 + random.random())
        raise self.retry(exc=exc, countdown=countdown, max_retries=ctx.settings.jobs.max_retries) from exc


def run_worker(settings: Settings, concurrency: int = 1) -> None:
    """`cairn worker`: one process, tasks one at a time (torch already uses every core)."""
    app = make_celery(settings)
    if settings.jobs.worker_torch_threads:
        import torch

        torch.set_num_threads(settings.jobs.worker_torch_threads)
    WorkerContext.get(settings)  # load the model before taking the first task
    app.worker_main(
        ["worker", "--pool=solo", "-Q", QUEUE, "--loglevel=INFO", "--without-gossip", "--without-mingle",
         f"--concurrency={concurrency}", "--hostname=cairn@%h"]
    )
