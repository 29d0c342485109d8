"""Evaluation runs: start, read, list, per-query detail, compare, baseline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import ContainerDep, PrincipalDep
from app.services.evals import (
    EvalComparison,
    EvalCreate,
    EvalRunPublic,
    EvalRunsPublic,
    QueryResultsPublic,
)

router = APIRouter(prefix="/v1/evals", tags=["evaluation"])


@router.post("", status_code=202, response_model=EvalRunPublic)
def start_eval(body: EvalCreate, principal: PrincipalDep, container: ContainerDep) -> EvalRunPublic:
    """Queue an evaluation job (kind `eval`; its id is also a `GET /v1/jobs/{id}` id). Searches
    run as the caller, so they see exactly what the caller may see."""
    return container.evals.create(principal, body)


@router.get("", response_model=EvalRunsPublic)
def list_evals(
    principal: PrincipalDep,
    container: ContainerDep,
    dataset_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> EvalRunsPublic:
    return container.evals.list(principal, dataset_id=dataset_id, limit=limit, offset=offset)


@router.get("/{run_id}", response_model=EvalRunPublic)
def get_eval(run_id: str, principal: PrincipalDep, container: ContainerDep) -> EvalRunPublic:
    return container.evals.get(principal, run_id)


@router.get("/{run_id}/queries", response_model=QueryResultsPublic)
def get_eval_queries(
    run_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    config: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> QueryResultsPublic:
    """Per-query detail: the ranking, the judged documents and every metric."""
    return container.evals.queries(principal, run_id, config=config, limit=limit, offset=offset)


@router.get("/{run_id}/compare/{other_id}", response_model=EvalComparison)
def compare_evals(
    run_id: str, other_id: str, principal: PrincipalDep, container: ContainerDep, metric: str | None = None
) -> EvalComparison:
    """Summary deltas per configuration (other - run) and the queries whose `metric` changed."""
    return container.evals.compare(principal, run_id, other_id, metric=metric)


@router.post("/{run_id}/baseline", response_model=EvalRunPublic)
def mark_baseline(run_id: str, principal: PrincipalDep, container: ContainerDep) -> EvalRunPublic:
    """Later runs over the same dataset are flagged `regressed` when a metric drops by more
    than their `regression_threshold` from this run."""
    return container.evals.set_baseline(principal, run_id)
