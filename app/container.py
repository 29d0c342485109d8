"""The composition root: the only place that picks concrete adapters from settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from app.auth import KeyStore
from app.db import make_engine, make_session_factory, migrate
from app.jobs import ThreadJobRunner
from app.services.blobs import BlobStore
from app.services.documents import DocumentService
from app.services.retriever import SearcherRetriever
from core.models import Role
from core.protocols import VectorIndex
from core.settings import ModelsSettings, Settings
from ingestion.chunking import TokenChunker
from ingestion.parsing import UnstructuredParser
from ingestion.pipeline import IngestionPipeline
from orchestration.answers import AnswerService
from orchestration.gateway import ModelGateway, Pricing, ProviderPolicy, ProviderSpec, build_gateway
from orchestration.gateway.config import RetryPolicy
from orchestration.workflows.registry import WorkflowRegistry
from orchestration.workflows.store import RunStore
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.search import HybridSearcher
from retrieval.sparse import Bm25SparseEncoder

log = logging.getLogger(__name__)
ADMIN_KEY_FILE = "admin.key"


def build_index(settings: Settings, dim: int) -> VectorIndex:
    if settings.qdrant_url:
        from retrieval.index.qdrant_remote import QdrantIndex

        return QdrantIndex(
            settings.qdrant_url, settings.qdrant_collection, dense_dim=dim, api_key=settings.qdrant_api_key
        )
    from retrieval.index.edge import EdgeIndex

    return EdgeIndex(settings.index_path, dense_dim=dim)


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
        self.embedder = embedder or SentenceTransformerEmbedder(
            settings.embedding.model_path, settings.embedding.precision, settings.embedding.batch_size
        )
        self.sparse = Bm25SparseEncoder()
        self.index: VectorIndex = build_index(settings, dim=384)
        self.parser = UnstructuredParser()
        self.pipeline = IngestionPipeline(
            self.parser,
            TokenChunker(self.embedder, settings.chunking.max_tokens, settings.chunking.overlap_tokens),
            self.embedder,
            self.sparse,
        )
        self.runner = ThreadJobRunner(self._run_jobs, threads=settings.ingestion.worker_threads)
        self.documents = DocumentService(
            self.sessions, BlobStore(settings.data_dir / "blobs"), self.pipeline, self.index, self.runner.enqueue
        )
        self.searcher = HybridSearcher(
            self.embedder,
            self.sparse,
            self.index,
            prefetch_limit=settings.search.prefetch_limit,
            rrf_k=settings.search.rrf_k,
        )
        self._build_answers()
        self.new_admin_key: str | None = None
        self._closed = False
        self._runs_recovered = False

    def _build_answers(self) -> None:
        """Answers: model gateway, durable workflow runs on the app's SQL database."""
        models = self.settings.models
        self.gateway = build_model_gateway(models)
        self.retriever = SearcherRetriever(self.searcher)
        self.runs = RunStore(self.sessions)
        self.answers = AnswerService(
            self.retriever,
            self.gateway,
            self.runs,
            registry=WorkflowRegistry.builtin(models.workflows_dir),
            default_top_k=self.settings.search.default_top_k,
        )

    async def recover_runs(self) -> int:
        """Resume runs a previous process left `running` or `compensating` (their completed
        steps are replayed from the event log, not executed again). Runs once per container, on
        the serving event loop (the gateway's HTTP clients belong to it); one run that cannot
        resume is logged and does not hold up the others."""
        if self._runs_recovered or not self.settings.models.recover_runs:
            return 0
        self._runs_recovered = True
        store, engine = self.answers.engine.store, self.answers.engine
        pending = store.list_runs(status="running") + store.list_runs(status="compensating")
        for run in pending:
            try:
                await engine.resume(run.id)
            except Exception:
                log.exception("could not resume workflow run %s", run.id)
        if pending:
            log.info("resumed %d unfinished workflow runs", len(pending))
        return len(pending)

    def _run_jobs(self, job_ids: list[str]) -> None:
        self.documents.run_jobs(job_ids)

    def start(self) -> None:
        migrate(self.engine)
        self.new_admin_key = self._bootstrap_admin()
        self.embedder.warm_up()
        self.parser.warm_up()
        self.index.warm_up()
        self.runner.start()
        recovered = self.runner.recover(self.sessions)
        if recovered:
            log.info("re-enqueued %d unfinished jobs", recovered)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.runner.shutdown()
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
