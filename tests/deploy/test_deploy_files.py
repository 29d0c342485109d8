"""The deployment files, checked by parsing (no container engine here): they are valid YAML, the
stack has every part the docs promise, every CAIRN_* variable is a setting Cairn reads (a typo
would be ignored silently: Settings has extra="ignore"), and the image runs as non-root."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from app.routes.health import router as health_router
from core.settings import Settings

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
CAIRN_VAR = re.compile(r"\bCAIRN_[A-Z0-9_]+\b")


def setting_exists(env_name: str) -> bool:
    """Resolve CAIRN_A__B like pydantic-settings does: a Settings field, then nested sections."""
    parts = env_name.removeprefix("CAIRN_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i == len(parts) - 1:
            return True
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False  # a dict/list field takes JSON, not a deeper __ name
        model = annotation
    return True


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_docs() -> list[dict[str, Any]]:
    return [d for path in K8S for d in yaml.safe_load_all(path.read_text()) if d]


def env_names() -> dict[str, set[str]]:
    """Every CAIRN_* name each file sets or mentions, by file."""
    files = [COMPOSE, DOCKERFILE, *K8S]
    return {p.name: set(CAIRN_VAR.findall(p.read_text())) for p in files}


def test_the_resolver_itself_tells_real_settings_from_typos() -> None:
    assert setting_exists("CAIRN_QDRANT_URL")
    assert setting_exists("CAIRN_CONNECTORS__SCHEDULER")
    assert not setting_exists("CAIRN_CONNECTORS__SCHEDULR")
    assert not setting_exists("CAIRN_QDRANT_REPLICAS")
    assert not setting_exists("CAIRN_MODELS__PROVIDERS__OPENAI")


def test_every_cairn_variable_in_the_deploy_files_is_a_real_setting() -> None:
    names = env_names()
    assert names["docker-compose.yml"] and names["config.yaml"] and names["Dockerfile"]
    unknown = {f: sorted(n for n in found if not setting_exists(n)) for f, found in names.items()}
    assert {f: n for f, n in unknown.items() if n} == {}


def test_compose_has_two_api_replicas_behind_a_proxy_and_the_whole_backend() -> None:
    services = compose()["services"]
    api = [n for n, s in services.items() if "api" in n and "cairn" in str(s.get("image", ""))]
    assert len(api) == 2
    for name in ("proxy", "worker", "redis", "postgres"):
        assert name in services
    qdrant = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("qdrant/qdrant")}
    assert len(qdrant) == 3
    assert all(s["environment"]["QDRANT__CLUSTER__ENABLED"] == "true" for s in qdrant.values())
    assert sum("--bootstrap" in s["command"] for s in qdrant.values()) == 2  # two join the first
    assert services["worker"]["command"] == ["cairn", "worker"]

    nginx = (DEPLOY / "nginx.conf").read_text()
    assert all(f"server {n}:8000" in nginx for n in api)
    assert "proxy_buffering off" in nginx  # answers stream (SSE)


def test_scheduler_and_run_recovery_run_in_exactly_one_process() -> None:
    services = compose()["services"]
    cairn = {n: s["environment"] for n, s in services.items() if "CAIRN_DATA_DIR" in s.get("environment", {})}
    assert set(cairn) == {"api-1", "api-2", "worker"}
    on = [n for n, env in cairn.items() if env["CAIRN_CONNECTORS__SCHEDULER"] == "true"]
    assert on == [n for n, env in cairn.items() if env["CAIRN_MODELS__RECOVER_RUNS"] == "true"] == ["api-1"]
    assert all(env["CAIRN_QDRANT_REPLICATION_FACTOR"] == "2" for env in cairn.values())

    deployments = [d for d in k8s_docs() if d["kind"] == "Deployment" and "api" in d["metadata"]["name"]]
    leaders = 0
    for d in deployments:
        env = {e["name"]: e["value"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        if env["CAIRN_CONNECTORS__SCHEDULER"] == "true":
            leaders += d["spec"]["replicas"]
            assert d["spec"]["strategy"]["type"] == "Recreate"
    assert leaders == 1


def test_api_and_worker_share_the_data_dir() -> None:
    services = compose()["services"]
    for name in ("api-1", "api-2", "worker"):
        assert "cairn-data:/data" in services[name]["volumes"]
        assert services[name]["environment"]["CAIRN_DATA_DIR"] == "/data"
    pvc = next(d for d in k8s_docs() if d["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for d in k8s_docs():
        if d["kind"] == "Deployment":
            claims = [v["persistentVolumeClaim"]["claimName"] for v in d["spec"]["template"]["spec"]["volumes"]]
            assert claims == [pvc["metadata"]["name"]]


def test_k8s_manifests_cover_the_stack_and_kustomize_lists_them_all() -> None:
    docs = k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs if "metadata" in d}
    assert {("Service", "cairn-api"), ("Ingress", "cairn"), ("ConfigMap", "cairn-config"),
            ("Secret", "cairn-secrets"), ("Deployment", "cairn-worker")} <= kinds  # fmt: skip
    api_replicas = sum(
        d["spec"]["replicas"] for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cairn-api"
    )
    assert api_replicas == 2
    qdrant = next(d for d in docs if d["kind"] == "StatefulSet")
    assert qdrant["spec"]["replicas"] == 3
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S if p.name != "kustomization.yaml")
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec", {})
        if spec:
            assert spec["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]


def test_dockerfile_runs_as_non_root_offline_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("root", "0")
    assert "HF_HUB_OFFLINE=1" in text
    torch = next(i for i, ln in enumerate(lines) if "torch==2.13.0" in ln)
    project = next(i for i, ln in enumerate(lines) if ln.startswith("RUN pip install ."))
    assert torch < project  # CPU torch before the project, or pip pulls the CUDA build
    health = next(ln for ln in lines if ln.startswith("HEALTHCHECK"))
    joined = " ".join(lines[lines.index(health) : lines.index(health) + 2])
    assert "/healthz" in joined and "8000" in joined
    assert "/healthz" in {route.path for route in health_router.routes}  # a route the API serves
    assert "EXPOSE 8000" in lines
    assert lines[-1] == 'CMD ["cairn", "serve", "--host", "0.0.0.0", "--port", "8000"]'


def test_dashboard_thresholds_are_the_alert_rules_thresholds() -> None:
    from app.services.stats import THRESHOLDS

    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    lines = {
        "success_rate": ("CairnWorkflowSuccessRateWarning", "CairnWorkflowSuccessRateCritical"),
        "quality": ("CairnRetrievalQualityWarning", "CairnRetrievalQualityCritical"),
        "p95_seconds": ("CairnWorkflowSlowWarning", "CairnWorkflowSlowCritical"),
    }
    for figure, (warning, critical) in lines.items():
        for alert, level in ((warning, "warning"), (critical, "critical")):
            limit = float(re.split(r"[<>]", exprs[alert])[-1])
            assert THRESHOLDS[figure][level] == limit, alert
