"""Evaluation runs as the API sees them: start one, read it, list, per-query detail, compare two,
mark a baseline. The work itself happens in `app.services.eval_jobs`.

Visibility follows the dataset: a run is readable by whoever may see its dataset (same tenant, ACL
match), and anything else is a 404, so another tenant cannot even learn that a run id exists.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.services import eval_scoring as scoring
from app.services.eval_datasets import EvalDatasetService
from app.services.eval_search import DEFAULT_CONFIGS, EvalConfig, resolve_configs
from core.errors import Conflict, InvalidInput, PermissionDenied
from core.models import Principal, UtcDateTime
from core.tables import Job
from core.tables_evals import EvalDataset, EvalQueryResult, EvalRun


class EvalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["eval"] = "eval"  # `tune`: app.services.tuning.TuneCreate
    dataset_id: str
    configs: list[str | EvalConfig] = Field(
        default_factory=lambda: list[str | EvalConfig](DEFAULT_CONFIGS), max_length=16
    )
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 100], min_length=1, max_length=8)
    regression_threshold: float = Field(default=0.02, ge=0, le=1)
    max_queries: int | None = Field(default=None, ge=1)


class Regression(BaseModel):
    config: str
    metric: str
    baseline: float
    value: float
    delta: float


class EvalRunPublic(BaseModel):
    id: str
    dataset_id: str
    status: str  # queued | running | succeeded | failed
    progress: float
    error: str | None
    configs: list[EvalConfig]
    ks: list[int]
    summary: dict[str, dict[str, float]]
    is_baseline: bool
    baseline_id: str | None
    regression_threshold: float
    regressed: bool
    regressions: list[Regression]
    duration_s: float | None
    created_by: str
    created_at: UtcDateTime
    finished_at: UtcDateTime | None


class EvalRunsPublic(BaseModel):
    data: list[EvalRunPublic]
    count: int


class QueryResultPublic(BaseModel):
    config: str
    query_id: str
    query: str
    relevant: dict[str, int]
    ranked: list[str]
    metrics: dict[str, float]
    latency_ms: float


class QueryResultsPublic(BaseModel):
    data: list[QueryResultPublic]
    count: int


class MetricDelta(BaseModel):
    a: float
    b: float
    delta: float


class QueryDelta(MetricDelta):
    query_id: str


class EvalComparison(BaseModel):
    a: str
    b: str
    dataset_id: str
    metric: str  # the metric the per-query deltas are in
    configs: dict[str, dict[str, MetricDelta]]
    per_query: dict[str, list[QueryDelta]]


class EvalService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        datasets: EvalDatasetService,
        enqueue: Callable[[str], None],
        rerank_available: Callable[[], bool],
    ) -> None:
        self._sessions = sessions
        self.datasets = datasets
        self._enqueue = enqueue
        self._rerank_available = rerank_available

    def create(self, principal: Principal, body: EvalCreate) -> EvalRunPublic:
        dataset = self.datasets.load(principal, body.dataset_id)
        configs = resolve_configs(body.configs, self._rerank_available())
        if any(k < 1 or k > 1000 for k in body.ks):
            raise InvalidInput("every k must be between 1 and 1000", field="ks")
        run_id = secrets.token_hex(12)
        with self._sessions.begin() as s:
            s.add(EvalRun(
                id=run_id, tenant_id=principal.tenant_id, dataset_id=dataset.id,
                principal=principal.model_dump(mode="json"), configs=[c.model_dump() for c in configs],
                ks=sorted(set(body.ks)), status="queued", summary={}, regressions=[],
                regression_threshold=body.regression_threshold, created_by=principal.user,
                is_baseline=False, max_queries=body.max_queries,
            ))
            s.add(Job(id=run_id, tenant_id=principal.tenant_id, kind="eval", state="queued",
                      created_by=principal.user, doc_id=None))
        self._enqueue(run_id)  # after the commit
        return self.get(principal, run_id)

    # ---- read -----------------------------------------------------------------------------

    def _load(self, s: Session, principal: Principal, run_id: str) -> EvalRun:
        return self.datasets.load_child(s, principal, EvalRun, run_id, "evaluation run")

    def get(self, principal: Principal, run_id: str) -> EvalRunPublic:
        with self._sessions() as s:
            run = self._load(s, principal, run_id)
            job = s.get(Job, run_id)
            return _public(run, job.progress if job else 0.0)

    def list(
        self, principal: Principal, dataset_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> EvalRunsPublic:
        visible = [d.id for d in self.datasets.list(principal).data]
        if dataset_id is not None:
            visible = [d for d in visible if d == dataset_id]
        base = select(EvalRun).where(EvalRun.tenant_id == principal.tenant_id, EvalRun.dataset_id.in_(visible))
        with self._sessions() as s:
            count = s.scalar(select(func.count()).select_from(base.subquery())) or 0
            runs = s.scalars(base.order_by(EvalRun.created_at.desc()).limit(limit).offset(offset)).all()
            progress = {j.id: j.progress for j in s.scalars(select(Job).where(Job.id.in_([r.id for r in runs])))}
            return EvalRunsPublic(data=[_public(r, progress.get(r.id, 0.0)) for r in runs], count=count)

    def queries(
        self, principal: Principal, run_id: str, config: str | None = None, limit: int = 100, offset: int = 0
    ) -> QueryResultsPublic:
        with self._sessions() as s:
            run = self._load(s, principal, run_id)
            dataset = s.get(EvalDataset, run.dataset_id)
            assert dataset is not None
            base = select(EvalQueryResult).where(EvalQueryResult.run_id == run_id)
            if config is not None:
                base = base.where(EvalQueryResult.config == config)
            count = s.scalar(select(func.count()).select_from(base.subquery())) or 0
            rows = s.scalars(
                base.order_by(EvalQueryResult.config, EvalQueryResult.query_id).limit(limit).offset(offset)
            ).all()
            data = [
                QueryResultPublic(
                    config=r.config, query_id=r.query_id, query=dataset.queries.get(r.query_id, ""),
                    relevant=dataset.qrels.get(r.query_id, {}), ranked=list(r.ranked), metrics=r.metrics,
                    latency_ms=r.latency_ms,
                )
                for r in rows
            ]
        return QueryResultsPublic(data=data, count=count)

    def compare(self, principal: Principal, a_id: str, b_id: str, metric: str | None = None) -> EvalComparison:
        with self._sessions() as s:
            a, b = self._load(s, principal, a_id), self._load(s, principal, b_id)
            if a.dataset_id != b.dataset_id:
                raise InvalidInput("only runs over the same dataset can be compared")
            for run in (a, b):
                if run.status != "succeeded":
                    raise Conflict(f"evaluation run {run.id!r} is {run.status}, not succeeded")
            metric = metric or scoring.primary_metric(a.ks)
            per_query: dict[str, list[QueryDelta]] = {}
            for config in sorted(set(_summary(a)) & set(_summary(b))):
                scores = {
                    run.id: {
                        r.query_id: r.metrics
                        for r in s.scalars(
                            select(EvalQueryResult).where(
                                EvalQueryResult.run_id == run.id, EvalQueryResult.config == config
                            )
                        )
                    }
                    for run in (a, b)
                }
                deltas = scoring.per_query_deltas(scores[a.id], scores[b.id], metric)
                per_query[config] = [QueryDelta(**d) for d in deltas]
            configs = scoring.compare_summaries(_summary(a), _summary(b))
        return EvalComparison(
            a=a.id, b=b.id, dataset_id=a.dataset_id, metric=metric,
            configs={c: {k: MetricDelta(**v) for k, v in m.items()} for c, m in configs.items()},
            per_query=per_query,
        )

    def set_baseline(self, principal: Principal, run_id: str) -> EvalRunPublic:
        """One baseline per dataset: later runs of that dataset are checked against it."""
        if not principal.can_write():
            raise PermissionDenied("marking a baseline needs the editor or admin role")
        with self._sessions.begin() as s:
            run = self._load(s, principal, run_id)
            if run.status != "succeeded":
                raise Conflict(f"only a succeeded run can be the baseline; this one is {run.status}")
            s.execute(
                update(EvalRun)
                .where(EvalRun.dataset_id == run.dataset_id, EvalRun.id != run.id)
                .values(is_baseline=False)
            )
            run.is_baseline = True
        return self.get(principal, run_id)


def _summary(run: EvalRun) -> dict[str, dict[str, float]]:
    return dict(run.summary or {})


def _public(run: EvalRun, progress: float) -> EvalRunPublic:
    regressions: list[dict[str, Any]] = list(run.regressions or [])
    return EvalRunPublic(
        id=run.id, dataset_id=run.dataset_id, status=run.status, progress=progress, error=run.error,
        configs=[EvalConfig.model_validate(c) for c in run.configs], ks=list(run.ks), summary=_summary(run),
        is_baseline=run.is_baseline, baseline_id=run.baseline_id, regression_threshold=run.regression_threshold,
        regressed=bool(regressions), regressions=[Regression(**r) for r in regressions],
        duration_s=run.duration_s, created_by=run.created_by, created_at=run.created_at,
        finished_at=run.finished_at,
    )
