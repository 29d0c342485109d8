"""Prometheus `/metrics` scraped from a live server, and the alert rules / dashboard in deploy/
checked against what that scrape actually exports."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.app import beir_fixture
from tests.app.api import ADMIN

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {ADMIN}"}
_METRIC_NAME = re.compile(r"\b(cairn_[a-z0-9_]+)")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exported_names(text: str) -> set[str]:
    names = {m.group(1) for m in re.finditer(r"^# (?:HELP|TYPE) (\S+)", text, re.M)}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def is_exported(name: str, exported: set[str]) -> bool:
    base = re.sub(r"_(bucket|count|sum|total)$", "", name)
    return name in exported or base in exported


def wait_job(client: httpx.Client, job_id: str, terminal: tuple[str, ...]) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["state"] in terminal:
            return body  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
def scraped(live_server) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A live server that has ingested, searched and evaluated; returns (base_url, scrape)."""
    base = live_server()
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
        r = client.post("/v1/documents", files={"file": ("a.txt", b"Quarterly revenue grew by ten percent.")},
                        data={"metadata": json.dumps({"title": "revenue", "doc_id": "rev"})})
        assert wait_job(client, r.json()["job_id"], ("indexed", "failed"))["state"] == "indexed"
        assert client.get("/v1/documents/rev").status_code == 200
        assert client.post("/v1/search", json={"query": "revenue growth"}).status_code == 200
        answer = client.post("/v1/answers", json={"question": "By how much did quarterly revenue grow?"})
        assert answer.status_code == 200 and not answer.json()["abstained"], answer.text
        multipart = [("files", (n, d)) for n, d in beir_fixture.files().items()]
        ds = client.post("/v1/eval-datasets", files=multipart, data={"name": "tiny"}).json()
        run = client.post("/v1/evals", json={"dataset_id": ds["id"], "configs": ["hybrid"], "ks": [10]}).json()
        assert wait_job(client, run["id"], ("succeeded", "failed"))["state"] == "succeeded"
        r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return ds["id"], r.text


def test_metrics_cover_http_ingest_search_corpus_jobs_and_eval(scraped: tuple[str, str]) -> None:
    dataset_id, text = scraped
    got = samples(text)

    def value(name: str, **labels: str) -> float:
        return got.get((name, frozenset(labels.items())), -1.0)

    # route templates, never raw ids, label HTTP metrics
    assert value("cairn_http_request_duration_seconds_count", method="GET", route="/v1/documents/{document_id}") >= 1
    assert not any("route" in dict(k[1]) and dict(k[1])["route"] == "/v1/documents/rev" for k in got)
    assert value("cairn_http_requests_total", method="POST", route="/v1/search", status="200") >= 1
    assert value("cairn_search_duration_seconds_count", source="api") >= 1
    assert value("cairn_search_duration_seconds_count", source="eval") >= 6
    assert value("cairn_ingest_documents_total", outcome="indexed") >= 21
    assert value("cairn_ingest_duration_seconds_count", outcome="indexed") >= 21
    assert value("cairn_corpus_documents") == 21
    assert value("cairn_corpus_chunks") >= 21
    assert value("cairn_jobs_queue_depth", kind="ingest", state="queued") == 0
    assert value("cairn_eval_hit_rate", dataset=dataset_id, config="hybrid") == 1.0
    assert value("cairn_eval_runs_total", status="succeeded") >= 1
    assert 0 < value("cairn_disk_used_ratio") < 1 and 0 < value("cairn_memory_used_ratio") < 1
    # the answer went through the gateway: calls, tokens by model and tenant, breaker state
    assert value("cairn_model_calls_total", provider="local", outcome="ok") >= 1
    # (grounded_qa asks for the `accurate` alias; the local extractive model reports the name it was asked by)
    tokens = {"provider": "local", "model": "accurate", "tenant": "default"}
    assert value("cairn_model_tokens_total", **tokens, direction="input") > 0
    assert value("cairn_model_tokens_total", **tokens, direction="output") > 0
    assert value("cairn_circuit_breaker_open", provider="local") == 0
    # the hooks the answer path calls are exported even before their first observation
    for name in ("cairn_workflow_run_duration_seconds", "cairn_workflow_runs", "cairn_model_calls"):
        assert name in exported_names(text)


def test_metrics_token_guards_the_endpoint(make_container, live_server) -> None:  # type: ignore[no-untyped-def]
    base = live_server(make_container(metrics_token="scrape-secret"))
    assert httpx.get(f"{base}/metrics").status_code == 401
    assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200


def test_alert_rules_and_dashboard_reference_only_exported_metrics(scraped: tuple[str, str]) -> None:
    exported = exported_names(scraped[1])
    rules_doc = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    rules = [rule for group in rules_doc["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        assert rule["alert"] and rule["expr"] and "for" in rule, rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        names = _METRIC_NAME.findall(rule["expr"])
        assert names, rule["alert"]
        unknown = [n for n in names if not is_exported(n, exported)]
        assert not unknown, (rule["alert"], unknown)
    exprs = " ".join(r["expr"] for r in rules)
    for threshold in ("> 300", "> 600", "< 0.97", "< 0.95", "< 0.85", "< 0.80", "> 0.80", "> 0.90"):
        assert threshold in exprs, threshold

    dashboard = json.loads((ROOT / "deploy/grafana/cairn-dashboard.json").read_text())
    targets = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(targets) >= 10
    for expr in targets:
        unknown = [n for n in _METRIC_NAME.findall(expr) if not is_exported(n, exported)]
        assert not unknown, (expr, unknown)
