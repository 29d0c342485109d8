"""Evaluation runs: start, read, list, per-query detail, compare, baseline."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Discriminator, Tag

from app.deps import ContainerDep, PrincipalDep
from app.services.evals import (
    EvalComparison,
    EvalCreate,
    EvalRunPublic,
    EvalRunsPublic,
    QueryResultsPublic,
)
from app.services.tuning import TuneCreate, TuningProposalPublic

router = APIRouter(prefix="/v1/evals", tags=["evaluation"])


def _kind(body: Any) -> str:
    return str(body.get("kind", "eval") if isinstance(body, dict) else getattr(body, "kind", "eval"))


EvalOrTune = Annotated[
    Annotated[EvalCreate, Tag("eval")] | Annotated[TuneCreate, Tag("tune")], Discriminator(_kind)
]


@router.post("", status_code=202, response_model=EvalRunPublic | TuningProposalPublic)
def start_eval(
    body: EvalOrTune, principal: PrincipalDep, container: ContainerDep
) -> EvalRunPublic | TuningProposalPublic:
    """Queue an evaluation job (kind `eval`; its id is also a `GET /v1/jobs/{id}` id). Searches
    run as the caller, so they see exactly what the caller may see.

    `kind: tune` queues a tuning job instead: `search_space` (values to try for `fusion`,
    `dense_weight`, `rerank`, `rerank_depth`), `holdout` (share of queries held back) and `seed`.
    It grid-searches on the training queries by nDCG@10 and stores a proposal (read it at
    `GET /v1/tuning/proposals/{id}`) with its training and held-back scores and the current
    settings' held-back score."""
    if isinstance(body, TuneCreate):
        return container.tuning.create(principal, body)
    return container.evals.create(principal, body)


@router.get("", response_model=EvalRunsPublic)
def list_evals(
    principal: PrincipalDep,
    container: ContainerDep,
    dataset_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
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
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
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
