"""The dashboard's figures for one caller, computed from what is persisted (SQL), not from the
process-local Prometheus counters: every API replica then shows the same numbers, and they
survive a restart. Scoped like the rest of the API: documents the caller may see, the caller's
own jobs and runs (a tenant admin: the tenant's)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.models import Principal, Role
from core.tables import Document, DocumentAcl, Job
from core.tables_evals import EvalRun
from orchestration.workflows.store import TERMINAL, RunRecord, RunStoreProtocol

RECENT_RUNS = 500
RECENT_INGESTS = 500

# the thresholds of deploy/prometheus/alerts.yml, so the UI marks the same lines the alerts use
THRESHOLDS = {
    "success_rate": {"warning": 0.97, "critical": 0.95, "direction": "below"},
    "quality": {"warning": 0.85, "critical": 0.80, "direction": "below"},
    "p95_seconds": {"warning": 300.0, "critical": 600.0, "direction": "above"},
    "ingest_success_rate": {"warning": 0.97, "critical": 0.95, "direction": "below"},
    "ingest_p95_seconds": {"warning": 300.0, "critical": 600.0, "direction": "above"},
}


class Quality(BaseModel):
    dataset_id: str
    config: str
    hit_rate: float = Field(description="hit_rate@10 (or the largest k) of the latest succeeded evaluation run")
    ndcg: float | None = Field(default=None, description="nDCG at the same k, same config")
    mrr: float | None = Field(default=None, description="MRR at the same k, same config")
    k: int = 10
    finished_at: datetime | None


class Ingestion(BaseModel):
    finished: int = Field(description="ingest jobs that ended (indexed or failed), the most recent first")
    indexed: int
    failed: int
    success_rate: float | None
    p95_seconds: float | None = Field(description="upload to indexed or failed")
    queued: int = Field(description="ingest jobs not finished yet")


class Stats(BaseModel):
    scope: str = Field(description="'tenant' for an admin, 'own' otherwise (jobs and runs)")
    documents: int = Field(description="documents with at least one version that the caller may see")
    jobs: dict[str, int] = Field(description="jobs by state")
    runs: dict[str, int] = Field(description="workflow runs by status, over the most recent runs")
    runs_considered: int
    success_rate: float | None = Field(description="succeeded / finished runs among the most recent")
    p50_seconds: float | None = Field(description="start to finish of finished runs (includes review waits)")
    p95_seconds: float | None
    p99_seconds: float | None
    cost_usd: float = Field(default=0.0, description="model cost of the runs considered")
    ingestion: Ingestion | None = Field(default=None, description="the caller's (admin: the tenant's) ingest jobs")
    quality: Quality | None = Field(description="the lowest config of the latest succeeded evaluation")
    thresholds: dict[str, dict[str, float | str]]
    generated_at: datetime


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _seconds(run: RunRecord) -> float:
    return max((_aware(run.updated_at) - _aware(run.created_at)).total_seconds(), 0.0)


def run_figures(runs: list[RunRecord]) -> dict[str, object]:
    by_status = Counter(r.status for r in runs)
    finished = [r for r in runs if r.status in TERMINAL]
    durations = [_seconds(r) for r in finished]
    rate = by_status["succeeded"] / len(finished) if finished else None
    return {
        "runs": dict(by_status),
        "runs_considered": len(runs),
        "success_rate": None if rate is None else round(rate, 4),
        "p50_seconds": percentile(durations, 50),
        "p95_seconds": percentile(durations, 95),
        "p99_seconds": percentile(durations, 99),
        "cost_usd": round(sum(r.cost_usd for r in runs), 6),
    }


def compute(principal: Principal, sessions: sessionmaker[Session], runs: RunStoreProtocol) -> Stats:
    admin = principal.role is Role.admin
    tenant = principal.tenant_id
    visible = (
        select(DocumentAcl.doc_id)
        .where(DocumentAcl.tenant_id == tenant, DocumentAcl.principal.in_(principal.acl_principals))
        .distinct()
    )
    jobs_q = select(Job.state, func.count()).where(Job.tenant_id == tenant)
    ingest_q = select(Job.state, Job.created_at, Job.finished_at).where(Job.tenant_id == tenant, Job.kind == "ingest")
    evals_q = select(EvalRun).where(EvalRun.tenant_id == tenant, EvalRun.status == "succeeded")
    if not admin:
        jobs_q = jobs_q.where(Job.created_by == principal.user)
        ingest_q = ingest_q.where(Job.created_by == principal.user)
        evals_q = evals_q.where(EvalRun.created_by == principal.user)
    with sessions() as s:
        documents = s.scalar(
            select(func.count())
            .select_from(Document)
            .where(Document.tenant_id == tenant, Document.doc_id.in_(visible), Document.latest_version > 0)
        )
        jobs = {state: n for state, n in s.execute(jobs_q.group_by(Job.state)).all()}
        latest = s.scalars(evals_q.order_by(EvalRun.created_at.desc()).limit(1)).first()
        quality = _quality(latest) if latest else None
        ingestion = _ingestion(s, ingest_q)

    mine = [r for r in runs.list_runs(tenant_id=tenant) if admin or r.principal.get("user") == principal.user]
    return Stats(
        scope="tenant" if admin else "own",
        documents=documents or 0,
        jobs=jobs,
        **run_figures(mine[-RECENT_RUNS:]),  # type: ignore[arg-type]
        ingestion=ingestion,
        quality=quality,
        thresholds=THRESHOLDS,  # type: ignore[arg-type]
        generated_at=datetime.now(UTC),
    )


def _quality(run: EvalRun) -> Quality | None:
    worst: Quality | None = None
    for config, values in (run.summary or {}).items():
        ks = sorted(int(key.split("@")[1]) for key in values if key.startswith("hit_rate@"))
        if not ks:
            continue
        k = 10 if 10 in ks else ks[-1]
        q = Quality(
            dataset_id=run.dataset_id,
            config=config,
            hit_rate=float(values[f"hit_rate@{k}"]),
            ndcg=values.get(f"ndcg@{k}"),
            mrr=values.get(f"mrr@{k}"),
            k=k,
            finished_at=run.finished_at,
        )
        if worst is None or q.hit_rate < worst.hit_rate:
            worst = q
    return worst


def _ingestion(s: Session, jobs: Select[str, datetime, datetime | None]) -> Ingestion | None:
    """Ingestion health over the latest finished ingest jobs, the figures the ingest alerts use."""
    done = s.execute(
        jobs.where(Job.state.in_(("indexed", "failed"))).order_by(Job.finished_at.desc()).limit(RECENT_INGESTS)
    ).all()
    pending = jobs.where(Job.state.not_in(("indexed", "failed")))
    queued = s.scalar(select(func.count()).select_from(pending.subquery()))
    if not done and not queued:
        return None
    indexed = sum(1 for state, _, _ in done if state == "indexed")
    durations = [(_aware(end) - _aware(start)).total_seconds() for _, start, end in done if end is not None]
    return Ingestion(
        finished=len(done),
        indexed=indexed,
        failed=len(done) - indexed,
        success_rate=round(indexed / len(done), 4) if done else None,
        p95_seconds=percentile([max(d, 0.0) for d in durations], 95),
        queued=queued or 0,
    )
