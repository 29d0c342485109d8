"""SQL tables for answer feedback and retrieval tuning.

Feedback snapshots what it judged (the question and the documents the answer cited) so a labelled
dataset can be rebuilt from these rows alone, even after the run's event log is pruned. A tuning
proposal is also the id of its `jobs` row (kind `tune`); the active tuning is one row per tenant,
so what a tenant's searches use survives a restart and is the same on every API replica.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.tables import Base, utcnow


class AnswerFeedback(Base):
    __tablename__ = "answer_feedback"
    __table_args__ = (
        Index("ix_answer_feedback_once", "tenant_id", "run_id", "user", unique=True),
        Index("ix_answer_feedback_tenant", "tenant_id", "workflow", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    workflow: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(256))
    rating: Mapped[str] = mapped_column(String(8))  # up | down
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # {"doc_id", "chunk_id"?, "quote"?}: the source the answer should have cited
    corrected: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    question: Mapped[str] = mapped_column(Text, default="")
    cited_doc_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TuningProposal(Base):
    __tablename__ = "tuning_proposals"
    __table_args__ = (Index("ix_tuning_proposals_tenant", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the id of its `jobs` row
    tenant_id: Mapped[str] = mapped_column(String(128))
    dataset_id: Mapped[str] = mapped_column(String(32), ForeignKey("eval_datasets.id", ondelete="CASCADE"))
    principal: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # searches run as this
    search_space: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    holdout: Mapped[float] = mapped_column(Float, default=0.3)
    seed: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | succeeded | failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    metric: Mapped[str] = mapped_column(String(32), default="ndcg@10")
    train_queries: Mapped[list[str]] = mapped_column(JSON, default=list)
    holdout_queries: Mapped[list[str]] = mapped_column(JSON, default=list)
    # the tenant's effective settings when the job ran, and the best point of the grid
    current: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    proposed: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    train_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    holdout_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    current_train_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    current_holdout_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    trials: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{"settings", "train_score"}]
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ActiveTuning(Base):
    __tablename__ = "tuning_active"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    proposal_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    activated_by: Mapped[str] = mapped_column(String(256))
    activated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
