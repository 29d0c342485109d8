"""SQL tables for retrieval evaluation: labelled datasets, runs, and each run's per-query scores.

A dataset is either its own collection (a BEIR corpus ingested as ordinary documents whose
`source` is `eval:<dataset id>`, ACL'd to the uploader) or a set of labelled queries attached to
the tenant's existing corpus. Either way the queries and qrels live here, not in the index, and a
run is scored from the same SQL rows the API returns, so a stored number can always be re-derived.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.tables import Base, utcnow


class EvalDataset(Base):
    __tablename__ = "eval_datasets"
    __table_args__ = (Index("ix_eval_datasets_tenant", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))  # "collection" | "attached"
    # the documents' `source` for a collection (eval:<id>); None for an attached dataset
    source: Mapped[str | None] = mapped_column(String(256), nullable=True)
    acl: Mapped[list[str]] = mapped_column(JSON, default=list)
    split: Mapped[str] = mapped_column(String(64), default="test")
    queries: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # query id -> text
    qrels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # query id -> {doc id: grade}
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # SearchFilters for attached
    doc_count: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalRun(Base):
    __tablename__ = "eval_runs"
    __table_args__ = (Index("ix_eval_runs_dataset", "tenant_id", "dataset_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the id of its `jobs` row
    tenant_id: Mapped[str] = mapped_column(String(128))
    dataset_id: Mapped[str] = mapped_column(String(32), ForeignKey("eval_datasets.id", ondelete="CASCADE"))
    principal: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # searches run as this
    configs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    ks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    max_queries: Mapped[int | None] = mapped_column(nullable=True)  # a quick run scores the first N
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # config -> {"ndcg@10": ..}
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    baseline_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    regression_threshold: Mapped[float] = mapped_column(Float, default=0.02)
    regressions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EvalQueryResult(Base):
    __tablename__ = "eval_query_results"

    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True)
    config: Mapped[str] = mapped_column(String(64), primary_key=True)
    query_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    ranked: Mapped[list[Any]] = mapped_column(JSON, default=list)  # dataset doc ids, best first
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
