"""The composition root: the only place that picks concrete adapters from settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import metrics
from app.auth import KeyStore
from app.db import make_engine, make_session_factory, migrate
from app.dispatch import CeleryDispatcher, RecoverySweep, thread_admission
from app.handoff import IndexApplier
from app.job_eta import JobEta, MemoryThroughput, RedisThroughput
from app.jobs import JobRetry, ThreadJobRunner
from app.ratelimit import build_limiter
from app.services.audit import AuditLog
from app.services.blobs import BlobStore
from app.services.connector_scheduler import SyncScheduler
from app.services.connector_sync import ConnectorSyncRunner
from app.services.connectors import ConnectorService
from app.services.documents import DocumentService
from app.services.eval_datasets import EvalDatasetService
from app.services.eval_jobs import EvalJobs
from app.services.eval_search import ConfigSearch
from app.services.evals import EvalService
from app.services.feedback import FeedbackService
from app.services.governance import GovernanceService
from app.services.pii_vault import build_pii_vault
from app.services.reindex import ReindexService, serving_generation
from app.services.tuning import ActiveTunings, TuningService
from core.models import Role
from core.protocols import VectorIndex
from core.settings import ModelsSettings, SearchSettings, Settings
from ingestion.chunking import TokenChunker
from ingestion.connectors import AccessPolicy
from ingestion.parsing import UnstructuredParser
from ingestion.pipeline import IngestionPipeline
from orchestration.answers import AnswerService
from orchestration.gateway import ModelGateway, Pricing, ProviderPolicy, ProviderSpec, build_gateway
from orchestration.gateway.config import RetryPolicy
from orchestration.workflows.registry import WorkflowRegistry
from orchestration.workflows.store import RunStore
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.gatherers import GathererRegistry
from retrieval.rerank import LearnedReranker, Reranker
from retrieval.retriever import ServiceRetriever
from retrieval.search import HybridSearcher
from retrieval.service import RetrievalDefaults, RetrievalService
from retrieval.sparse import Bm25SparseEncoder

log = logging.getLogger(__name__)
ADMIN_KEY_FILE = "admin.key"


def build_index(settings: Settings, dim: int) -> VectorIndex:
    if settings.qdrant_url:
        from retrieval.index.qdrant_remote import QdrantIndex

        return QdrantIndex(
            settings.qdrant_url,
            settings.qdrant_collection,
            dense_dim=dim,
            api_key=settings.qdrant_api_key,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
        )
    from retrieval.index.edge import EdgeIndex

    return EdgeIndex(settings.index_path, dense_dim=dim)


def build_serving_index(settings: Settings) -> VectorIndex:
    """What every reader and writer holds. Embedded: an `AliasedIndex`, the alias a reindex
    swaps; remote: a `QdrantIndex` on the Qdrant alias itself (the server swaps it)."""
    index = build_index(settings, dim=384)
    if settings.qdrant_url:
        return index
    from app.services._index_generations import FIRST
    from retrieval.index.aliased import AliasedIndex

    return AliasedIndex(index, FIRST)


def build_generations(settings: Settings, index: VectorIndex) -> Any:
    """The collection generations a reindex builds and swaps (`app/services/_index_generations.py`)."""
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        from retrieval.index.qdrant_remote import QdrantGenerations

        client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key, timeout=30)
        return QdrantGenerations(  # closes its client in `close()` (Container.close calls it)
            client, settings.qdrant_collection, 384, owns_client=True, shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
        )
    from app.services._index_generations import EdgeGenerations
    from retrieval.index.aliased import AliasedIndex

    assert isinstance(index, AliasedIndex)
    return EdgeGenerations(settings.data_dir, index)


def build_celery_dispatcher(settings: Settings, client: Any) -> CeleryDispatcher:
    from app import worker

    celery_app = worker.make_celery(settings)
    return CeleryDispatcher(client, celery_app, worker.QUEUE, worker.TASK, settings.jobs.max_queue_depth)


def build_reranker(search: SearchSettings) -> Reranker:
    """A local cross-encoder when CAIRN_SEARCH__RERANKER_MODEL_PATH names one, else the offline
    learned reranker (numpy only)."""
    if search.reranker_model_path:
        from retrieval.rerank.cross_encoder import CrossEncoderReranker

        return CrossEncoderReranker(search.reranker_model_path)
    return LearnedReranker(search.reranker_weights_path)


def build_retrieval(
    search: SearchSettings, searcher: HybridSearcher, count_tokens: Callable[[str], int]
) -> RetrievalService:
    """Gatherers from YAML (shipped file unless CAIRN_SEARCH__GATHERERS_PATH), reranker, defaults."""
    defaults = RetrievalDefaults(
        top_k=search.default_top_k,
        fusion=search.fusion,
        rrf_k=search.rrf_k,
        dense_weight=search.dense_weight,
        sparse_weight=search.sparse_weight,
        merge_rrf_k=search.merge_rrf_k,
        rerank=search.rerank,
        rerank_depth=search.rerank_depth,
        dedupe_threshold=search.dedupe_threshold,
        mmr_lambda=search.mmr_lambda,
        max_concurrency=search.gatherer_concurrency,
    )
    registry = GathererRegistry.from_yaml(search.gatherers_path, search.default_gatherers)
    return RetrievalService(
        searcher, registry, build_reranker(search), defaults=defaults, count_tokens=count_tokens
    )


def build_model_gateway(models: ModelsSettings) -> ModelGateway:
    """Settings -> gateway. `local` (extractive) is always added, so this needs no network."""
    specs = {
        name: ProviderSpec(
            kind=p.kind,
            model=p.model,
            base_url=p.base_url,
            api_key=p.api_key,
            policy=ProviderPolicy(
                external=p.external,
                allowed_tags=p.allowed_tags,
                pricing=Pricing(input_per_mtok=p.input_per_mtok, output_per_mtok=p.output_per_mtok),
                timeout_s=p.timeout_s,
            ),
        )
        for name, p in models.providers.items()
    }
    return build_gateway(
        specs,
        models.aliases or None,
        retry=RetryPolicy(max_retries=models.max_retries),
        budgets_usd=models.budgets_usd,
        default_budget_usd=models.default_budget_usd,
    )


class Container:
    """Cheap to construct; `start()` loads the model, opens the engine and migrates SQL."""

    def __init__(self, settings: Settings, embedder: SentenceTransformerEmbedder | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.sql_url)
        self.sessions = make_session_factory(self.engine)
        self.keys = KeyStore(self.sessions)
        self.audit = AuditLog(self.sessions)
        self.limiter = build_limiter(settings.limits, settings.redis_url)
        self.embedder = embedder or SentenceTransformerEmbedder(
            settings.embedding.model_path, settings.embedding.precision, settings.embedding.batch_size
        )
        self.sparse = Bm25SparseEncoder()
        self.index: VectorIndex = build_serving_index(settings)
        self.parser = UnstructuredParser()
        self.pii_vault = build_pii_vault(settings, self.sessions)
        self.pipeline = IngestionPipeline(
            self.parser,
            TokenChunker(self.embedder, settings.chunking.max_tokens, settings.chunking.overlap_tokens),
            self.embedder,
            self.sparse,
            redactor=self.pii_vault,
        )
        self.job_eta = JobEta(MemoryThroughput())
        self.runner = ThreadJobRunner(self._run_jobs, threads=settings.ingestion.worker_threads,
                                      throughput=self.job_eta.log)
        enqueue, admit = self._build_dispatch()
        self.documents = DocumentService(
            self.sessions, BlobStore(settings.data_dir / "blobs"), self.pipeline, self.index, enqueue, admit,
            pii_redacts=self.pii_vault.redacts,
        )
        gov = settings.governance
        self.governance = GovernanceService(
            self.sessions, self.documents, self.index, self.pii_vault, gov.retention_grace_days
        )
        self.purge_scheduler = SyncScheduler(self.governance.purge_due, gov.purge_interval_s) if gov.purge else None
        self.searcher = HybridSearcher(
            self.embedder,
            self.sparse,
            self.index,
            prefetch_limit=settings.search.prefetch_limit,
            rrf_k=settings.search.rrf_k,
        )
        self.retrieval = build_retrieval(settings.search, self.searcher, self.embedder.count_tokens)
        self._build_answers()
        self._build_evals()
        self._build_feedback()
        self._build_connectors()
        self._build_reindex()
        self.new_admin_key: str | None = None
        self._closed = False
        self._runs_recovered = False

    def _build_dispatch(self) -> tuple[Callable[[str], None], Callable[[], None]]:
        """Where jobs run: Celery workers when CAIRN_REDIS_URL is set, else this process.

        `job_routes` names the kinds sent to Celery besides ingest: syncs always; evaluation and
        reindex only with a Qdrant server, because the embedded engine can be read and written
        by this process alone (docs/jobs.md)."""
        jobs = self.settings.jobs
        self.sweep: RecoverySweep | None = None
        self.applier: IndexApplier | None = None
        self.job_routes: dict[str, Callable[[str], None]] = {}
        if not self.settings.redis_url:
            return self.runner.enqueue, thread_admission(self.runner.depth, jobs.max_queue_depth)
        import redis

        from app import worker

        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        dispatcher = build_celery_dispatcher(self.settings, client)
        self.job_eta = JobEta(RedisThroughput(client))
        self.job_routes["sync"] = dispatcher.sender(worker.SYNC_TASK, worker.JOBS_QUEUE)
        if self.settings.qdrant_url:
            self.job_routes["eval"] = dispatcher.sender(worker.EVAL_TASK, worker.JOBS_QUEUE)
            self.job_routes["reindex"] = dispatcher.sender(worker.REINDEX_TASK, worker.JOBS_QUEUE)
        routes = {"ingest": dispatcher.enqueue, **self.job_routes}
        if not self.settings.qdrant_url:  # this process owns the embedded engine: apply workers' results
            routes["unindex"] = lambda job_id: self.documents.apply_unindex(job_id)
            self.applier = IndexApplier(client, lambda ready: self.documents.finish(ready),
                                        lambda job_id: self.documents.apply_unindex(job_id))
        self.sweep = RecoverySweep(self.sessions, routes, jobs.sweep_interval_s, jobs.stale_after_s)
        return dispatcher.enqueue, dispatcher.admit

    def _build_reindex(self) -> None:
        """Reindex runs on its own thread here (embedded: only this process may write the
        engine), or as `cairn.reindex` on a worker with a Qdrant server."""
        self.reindex_runner = ThreadJobRunner(self._run_reindex, threads=1, max_batch=1)
        self.generations = build_generations(self.settings, self.index)
        self.reindex = ReindexService(
            self.sessions, BlobStore(self.settings.data_dir / "blobs"), self.pipeline, self.generations, self.index,
            self.job_routes.get("reindex", self.reindex_runner.enqueue), stale_after_s=self.settings.jobs.stale_after_s,
        )
        self.job_retry = JobRetry(
            self.sessions, self.documents.retry,
            {"sync": self.job_routes.get("sync", self.sync_runner.enqueue),
             "eval": self.job_routes.get("eval", self.eval_runner.enqueue),
             "tune": self.eval_runner.enqueue},  # tune jobs share the in-process evaluation queue
            self.reindex.requeue,
        )

    def _run_reindex(self, run_ids: list[str]) -> None:
        self.reindex.run_jobs(run_ids)

    def _build_answers(self) -> None:
        """Answers: model gateway, durable workflow runs on the app's SQL database."""
        models = self.settings.models
        self.gateway = build_model_gateway(models)
        self.gateway.observer = metrics.record_model_call
        self.retriever = ServiceRetriever(self.retrieval)
        self.runs = RunStore(self.sessions)
        self.answers = AnswerService(
            self.retriever,
            self.gateway,
            self.runs,
            registry=WorkflowRegistry.builtin(models.workflows_dir),
            reveal=self.pii_vault.revealer,
            default_top_k=self.settings.search.default_top_k,
        )

    def _build_evals(self) -> None:
        """Evaluation jobs: their own single worker thread, so a long run never delays ingestion.
        A `hybrid+rerank` configuration uses `self.retrieval` (the full retrieval service) when the
        container has one."""
        self.eval_runner = ThreadJobRunner(self._run_evals, threads=1, max_batch=1)
        self.eval_datasets = EvalDatasetService(self.sessions, self.documents)
        search = ConfigSearch(self.searcher, lambda: getattr(self, "retrieval", None))
        enqueue = self.job_routes.get("eval", self.eval_runner.enqueue)
        self.eval_jobs = EvalJobs(self.sessions, self.eval_datasets, search, enqueue,
                                  stale_after_s=self.settings.jobs.stale_after_s)
        self.evals = EvalService(self.sessions, self.eval_datasets, enqueue, lambda: search.rerank_available)

    def _build_connectors(self) -> None:
        """Connector syncs run on their own single thread (a sync waits for the ingest jobs it
        submits, so it must not occupy an ingest worker); the scheduler starts due syncs."""
        cfg = self.settings.connectors
        policy = AccessPolicy(tuple(cfg.filesystem_roots), tuple(cfg.allowed_hosts),
                              self.settings.ingestion.max_upload_bytes)
        self.sync_runner = ThreadJobRunner(self._run_syncs, threads=1, max_batch=1)
        self.connector_sync = ConnectorSyncRunner(self.sessions, self.documents, policy, cfg.sync_timeout_s,
                                                  stale_after_s=self.settings.jobs.stale_after_s)
        self.connectors = ConnectorService(
            self.sessions, self.documents, policy, self.job_routes.get("sync", self.sync_runner.enqueue),
            cfg.min_interval_s,
        )
        self.scheduler = SyncScheduler(self.connectors.run_due, cfg.scheduler_tick_s) if cfg.scheduler else None

    def _run_syncs(self, sync_ids: list[str]) -> None:
        self.connector_sync.run_jobs(sync_ids)

    def _build_feedback(self) -> None:
        """Answer feedback, and tuning: tune jobs share the evaluation queue; a tenant's active
        tuning reaches every search through `RetrievalService.tuning_for`."""
        self.feedback = FeedbackService(self.sessions, self.answers, self.index, self.eval_datasets)
        self.active_tunings = ActiveTunings(self.sessions)
        self.retrieval.tuning_for = self.active_tunings.options
        self.tuning = TuningService(
            self.sessions, self.eval_datasets, self.retrieval, self.active_tunings, self.eval_runner.enqueue
        )

    def _run_evals(self, run_ids: list[str]) -> None:
        self.eval_jobs.run_jobs(self.tuning.run_jobs(run_ids))

    async def recover_runs(self) -> int:
        """Resume runs a previous process left `running` or `compensating` (their completed
        steps are replayed from the event log, not executed again). Runs once per container, on
        the serving event loop (the gateway's HTTP clients belong to it); one run that cannot
        resume is logged and does not hold up the others."""
        if self._runs_recovered or not self.settings.models.recover_runs:
            return 0
        self._runs_recovered = True
        store, engine = self.answers.engine.store, self.answers.engine
        try:
            pending = store.list_runs(status="running") + store.list_runs(status="compensating")
        except Exception:
            log.exception("could not list unfinished workflow runs; none were resumed")
            return 0
        for run in pending:
            try:
                await engine.resume(run.id)
            except Exception:
                log.exception("could not resume workflow run %s", run.id)
        if pending:
            log.info("resumed %d unfinished workflow runs", len(pending))
        return len(pending)

    def _run_jobs(self, job_ids: list[str]) -> None:
        try:
            self.documents.run_jobs(job_ids)
        finally:
            metrics.observe_ingest_jobs(self.sessions, job_ids)

    def start(self) -> None:
        migrate(self.engine)
        self.new_admin_key = self._bootstrap_admin()
        if self.settings.embedding.torch_threads:
            import torch  # process-wide: every later torch call in this process uses it

            torch.set_num_threads(self.settings.embedding.torch_threads)
        self.embedder.warm_up()
        self.parser.warm_up()
        if hasattr(self.generations, "attach"):  # embedded: open the generation the alias names
            self.generations.attach(serving_generation(self.sessions, self.generations.alias) or "index")
        self.index.warm_up()
        self.retrieval.warm_up()
        self.runner.start()
        self.eval_runner.start()
        if self.sweep is None:
            recovered = self.runner.recover(self.sessions)
            if recovered:
                log.info("re-enqueued %d unfinished jobs", recovered)
        else:
            self.sweep.start()
        if self.applier is not None:
            self.applier.start()
        # kinds on Celery are recovered by the sweep (a worker may be running them right now)
        if "eval" not in self.job_routes and self.eval_jobs.recover():
            log.info("re-enqueued unfinished evaluation runs")
        if self.tuning.recover():
            log.info("re-enqueued unfinished tuning jobs")
        self.sync_runner.start()
        if "sync" not in self.job_routes and self.connectors.recover():
            log.info("re-enqueued unfinished connector syncs")
        self.reindex_runner.start()
        if "reindex" not in self.job_routes and self.reindex.recover():
            log.info("re-enqueued an unfinished reindex")
        if self.scheduler is not None:
            self.scheduler.start()
        if self.purge_scheduler is not None:
            self.purge_scheduler.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.purge_scheduler is not None:
            self.purge_scheduler.shutdown()
        self.connector_sync.stop()  # an unfinished sync goes back to the queue for the next start
        self.sync_runner.shutdown()
        self.eval_jobs.stop()  # an unfinished run goes back to the queue for the next start
        self.tuning.stop()
        self.eval_runner.shutdown()
        self.runner.shutdown()
        self.reindex.stop()  # an unfinished reindex starts over at the next start
        self.reindex_runner.shutdown()
        for part in (self.sweep, self.applier):
            if part is not None:
                part.stop()
        if hasattr(self.generations, "close"):
            self.generations.close()
        self.index.close()
        self.engine.dispose()

    def _bootstrap_admin(self) -> str | None:
        """CAIRN_ADMIN_KEY, when set, is always a valid admin key. Otherwise the first start
        generates one, returns it to be printed once, and leaves it in a 0600 file for the CLI."""
        tenant = self.settings.default_tenant
        if self.settings.admin_key:
            if not self.keys.has_key(self.settings.admin_key):
                self.keys.create(tenant, "admin", [], Role.admin, key=self.settings.admin_key)
            return None
        if self.keys.has_admin(tenant):
            return None
        _key_id, key = self.keys.create(tenant, "admin", [], Role.admin)
        path = self.admin_key_path
        path.write_text(key + "\n")
        os.chmod(path, 0o600)
        return key

    @property
    def admin_key_path(self) -> Path:
        return self.settings.data_dir / ADMIN_KEY_FILE
