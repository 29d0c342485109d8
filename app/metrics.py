"""Prometheus metrics: one registry, the HTTP middleware, and small hooks other modules call.

Why a registry of our own rather than prometheus_client's global one: tests build many apps in
one process, and what `/metrics` shows must be exactly the families below (the alert rules and
the Grafana dashboard in deploy/ are checked against this output). Counters and histograms are
process-wide, like the process they describe; gauges that describe stored state (queue depth,
corpus size) are read from SQL at scrape time by `refresh`, so they are right after a restart and
with several API replicas.

Hooks for the answer path (call them; they never raise):
    record_workflow_run(workflow, status, seconds)      status: succeeded | failed | ...
    record_workflow_step(workflow, step_kind, status, seconds)
    record_model_call(record)                           the gateway's observer (one CallRecord per attempt)
    record_answer_quality(workflow, score)              0..1, e.g. share of verified citations
    record_feedback(workflow, rating)                   rating: up | down (POST /v1/answers/{id}/feedback)
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.tables import Document, DocumentVersion, Job
from orchestration.gateway.gateway import CallRecord

log = logging.getLogger(__name__)
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
CONTENT_TYPE = CONTENT_TYPE_LATEST

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SLOW = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

HTTP_REQUESTS = Counter(
    "cairn_http_requests", "HTTP requests by route template and status", ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "cairn_http_request_duration_seconds", "HTTP request latency by route template", ["method", "route"],
    buckets=_FAST, registry=REGISTRY,
)
SEARCH_LATENCY = Histogram(
    "cairn_search_duration_seconds", "Search latency (api: POST /v1/search; eval: evaluation queries)",
    ["source"], buckets=_FAST, registry=REGISTRY,
)
INGEST_DOCS = Counter(
    "cairn_ingest_documents", "Ingest jobs finished, by outcome (indexed | failed)", ["outcome"], registry=REGISTRY
)
INGEST_LATENCY = Histogram(
    "cairn_ingest_duration_seconds", "Upload accepted -> indexed or failed", ["outcome"], buckets=_SLOW,
    registry=REGISTRY,
)
JOBS_QUEUE = Gauge("cairn_jobs_queue_depth", "Jobs not yet finished, by kind and state", ["kind", "state"],
                   registry=REGISTRY)
CORPUS_CHUNKS = Gauge("cairn_corpus_chunks", "Chunks of live document versions (all tenants)", registry=REGISTRY)
CORPUS_DOCS = Gauge("cairn_corpus_documents", "Documents with a live version (all tenants)", registry=REGISTRY)
DISK_USED = Gauge("cairn_disk_used_ratio", "Used share of the file system holding the data dir", registry=REGISTRY)
MEMORY_USED = Gauge("cairn_memory_used_ratio", "Process resident memory / machine memory", registry=REGISTRY)
EVAL_RUNS = Counter("cairn_eval_runs", "Evaluation runs finished, by status", ["status"], registry=REGISTRY)
EVAL_REGRESSIONS = Counter("cairn_eval_regressions", "Evaluation runs that regressed vs their baseline",
                           registry=REGISTRY)
EVAL_DURATION = Histogram("cairn_eval_duration_seconds", "Evaluation run duration", buckets=_SLOW,
                          registry=REGISTRY)
EVAL_HIT_RATE = Gauge("cairn_eval_hit_rate", "Hit rate@10 (or largest k) of the latest run per dataset/config",
                      ["dataset", "config"], registry=REGISTRY)
EVAL_NDCG = Gauge("cairn_eval_ndcg", "nDCG@10 (or largest k) of the latest run per dataset/config",
                  ["dataset", "config"], registry=REGISTRY)
WORKFLOW_RUNS = Counter("cairn_workflow_runs", "Workflow runs finished, by status", ["workflow", "status"],
                        registry=REGISTRY)
WORKFLOW_DURATION = Histogram("cairn_workflow_run_duration_seconds", "Workflow run execution time", ["workflow"],
                              buckets=_SLOW, registry=REGISTRY)
STEP_DURATION = Histogram("cairn_workflow_step_duration_seconds", "Workflow step execution time",
                          ["workflow", "step", "status"], buckets=_SLOW, registry=REGISTRY)
MODEL_CALLS = Counter("cairn_model_calls", "Model provider calls, by outcome (ok or the error class)",
                      ["provider", "outcome"], registry=REGISTRY)
MODEL_LATENCY = Histogram("cairn_model_call_duration_seconds", "Model provider call latency", ["provider"],
                          buckets=_SLOW, registry=REGISTRY)
MODEL_TOKENS = Counter("cairn_model_tokens", "Tokens sent to / received from providers",
                       ["provider", "model", "tenant", "direction"], registry=REGISTRY)
MODEL_COST = Counter("cairn_model_cost_usd", "Model spend in USD", ["provider", "model", "tenant"],
                     registry=REGISTRY)
BREAKER_STATE = Gauge("cairn_circuit_breaker_open", "Provider circuit breaker: 0 closed, 0.5 half-open, 1 open",
                      ["provider"], registry=REGISTRY)
ANSWER_FEEDBACK = Counter("cairn_answer_feedback", "Answer feedback given (thumbs up / down), by workflow",
                          ["workflow", "rating"], registry=REGISTRY)
ANSWER_QUALITY = Histogram("cairn_answer_quality_score", "Answer quality score (0..1)", ["workflow"],
                           buckets=(0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0), registry=REGISTRY)

# ---- hooks --------------------------------------------------------------------------------


def observe_search(seconds: float, source: str = "api") -> None:
    SEARCH_LATENCY.labels(source).observe(seconds)


def record_ingest(outcome: str, seconds: float) -> None:
    INGEST_DOCS.labels(outcome).inc()
    INGEST_LATENCY.labels(outcome).observe(max(seconds, 0.0))


def record_eval_run(
    dataset: str | None, summary: Mapping[str, Mapping[str, float]], seconds: float, status: str, regressed: bool
) -> None:
    EVAL_RUNS.labels(status).inc()
    if status != "succeeded" or dataset is None:
        return
    EVAL_DURATION.observe(seconds)
    if regressed:
        EVAL_REGRESSIONS.inc()
    for config, values in summary.items():
        ks = sorted(int(key.split("@")[1]) for key in values if key.startswith("hit_rate@"))
        if ks:
            k = 10 if 10 in ks else ks[-1]
            EVAL_HIT_RATE.labels(dataset, config).set(values[f"hit_rate@{k}"])
            EVAL_NDCG.labels(dataset, config).set(values[f"ndcg@{k}"])


def record_workflow_run(workflow: str, status: str, seconds: float) -> None:
    WORKFLOW_RUNS.labels(workflow, status).inc()
    WORKFLOW_DURATION.labels(workflow).observe(seconds)


def record_workflow_step(workflow: str, step: str, status: str, seconds: float) -> None:
    STEP_DURATION.labels(workflow, step, status).observe(seconds)


def record_model_call(r: CallRecord) -> None:
    MODEL_CALLS.labels(r.provider, r.outcome).inc()
    if r.outcome != "circuit_open":  # no call was made
        MODEL_LATENCY.labels(r.provider).observe(r.seconds)
    if r.input_tokens:
        MODEL_TOKENS.labels(r.provider, r.model, r.tenant_id, "input").inc(r.input_tokens)
    if r.output_tokens:
        MODEL_TOKENS.labels(r.provider, r.model, r.tenant_id, "output").inc(r.output_tokens)
    if r.cost_usd:
        MODEL_COST.labels(r.provider, r.model, r.tenant_id).inc(r.cost_usd)


def record_breakers(breakers: Mapping[str, Any]) -> None:
    """At scrape time: each provider's circuit breaker state."""
    for provider, breaker in breakers.items():
        BREAKER_STATE.labels(provider).set({"closed": 0.0, "half_open": 0.5}.get(breaker.state, 1.0))


def record_answer_quality(workflow: str, score: float) -> None:
    ANSWER_QUALITY.labels(workflow).observe(min(max(score, 0.0), 1.0))


def record_feedback(workflow: str, rating: str) -> None:
    ANSWER_FEEDBACK.labels(workflow, rating).inc()


def observe_ingest_jobs(sessions: sessionmaker[Session], job_ids: list[str]) -> None:
    """After an ingest batch: count each finished job and its end-to-end latency."""
    try:
        with sessions() as s:
            jobs = s.scalars(select(Job).where(Job.id.in_(job_ids))).all()
        for job in jobs:
            if job.state in ("indexed", "failed") and job.finished_at is not None:
                record_ingest(job.state, (job.finished_at - job.created_at).total_seconds())
    except Exception:  # metrics must never fail a job
        log.warning("could not record ingest metrics", exc_info=True)


# ---- scrape -------------------------------------------------------------------------------


def refresh(sessions: sessionmaker[Session], data_dir: Path) -> None:
    """Set the state gauges from SQL and the OS, just before a scrape."""
    with sessions() as s:
        queued = s.execute(
            select(Job.kind, Job.state, func.count())
            .where(Job.state.not_in(("indexed", "failed", "succeeded")))
            .group_by(Job.kind, Job.state)
        ).all()
        chunks = s.scalar(
            select(func.coalesce(func.sum(DocumentVersion.chunk_count), 0)).join(
                Document,
                (Document.tenant_id == DocumentVersion.tenant_id)
                & (Document.doc_id == DocumentVersion.doc_id)
                & (Document.current_version == DocumentVersion.version),
            )
        )
        docs = s.scalar(select(func.count()).select_from(Document).where(Document.current_version > 0))
    JOBS_QUEUE.clear()
    for kind in ("ingest", "eval"):
        JOBS_QUEUE.labels(kind, "queued").set(0)
    for kind, state, n in queued:
        JOBS_QUEUE.labels(kind, state).set(n)
    CORPUS_CHUNKS.set(chunks or 0)
    CORPUS_DOCS.set(docs or 0)
    try:
        usage = shutil.disk_usage(data_dir)
        DISK_USED.set(usage.used / usage.total if usage.total else 0.0)
    except OSError:
        pass
    MEMORY_USED.set(_memory_ratio())


def _memory_ratio() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / psutil.virtual_memory().total)


def render() -> bytes:
    return generate_latest(REGISTRY)


# ---- HTTP middleware ----------------------------------------------------------------------

SEARCH_ROUTES = frozenset({("POST", "/v1/search")})


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: streaming responses pass straight through). Labels use
    the matched route's template, never the raw path, so ids cannot explode the label set."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            if (method, route) in SEARCH_ROUTES and status < 400:
                observe_search(elapsed, source="api")
