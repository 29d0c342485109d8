"""OpenTelemetry: with CAIRN_OTEL__ENDPOINT set, one answer request is exported over OTLP/HTTP as a
tree of spans (request -> workflow run -> steps -> retrieval -> gatherer / engine, and the model
call), with tenant and workflow attributes and no document text. A local HTTP server plays the
collector and decodes the protobuf export with the opentelemetry-proto package."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_service

from app.main import create_app
from core.settings import OtelSettings
from tests.app.api import Api

pytestmark = pytest.mark.integration

VPN = ("VPN setup guide. Install the WireGuard client, import the configuration file from the "
       "IT portal, and connect before opening the internal wiki.")
QUESTION = "Which client do I install for the VPN?"


class Collector(BaseHTTPRequestHandler):
    spans: list[Any]
    paths: list[str]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = trace_service.ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).paths.append(self.path)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                type(self).spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(trace_service.ExportTraceServiceResponse().SerializeToString())

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[type[Collector]]:
    handler = type("TestCollector", (Collector,), {"spans": [], "paths": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def test_one_answer_request_is_exported_as_a_span_tree(make_container, collector) -> None:  # type: ignore[no-untyped-def]
    container = make_container(otel=OtelSettings(endpoint=collector.url, export_interval_ms=50))
    with TestClient(create_app(container=container)) as client:
        api = Api(client)
        api.ingest("vpn.txt", VPN, acl=["tenant:*"])
        answer = api.answer(QUESTION)
        assert not answer["abstained"]
    # leaving the client ran the lifespan's shutdown, which flushes the exporter

    assert set(collector.paths) == {"/v1/traces"}
    spans = list(collector.spans)
    roots = [s for s in spans if s.name == "POST /v1/answers"]
    assert len(roots) == 1
    root = roots[0]
    assert root.parent_span_id == b"" and root.kind == root.SPAN_KIND_SERVER
    assert attrs(root) | {"http.route": "/v1/answers", "http.response.status_code": 200, "tenant": "default"} \
        == attrs(root)
    tree = [s for s in spans if s.trace_id == root.trace_id]
    by_id = {s.span_id: s for s in tree}

    def children(parent: Any, name: str) -> list[Any]:
        return [s for s in tree if s.parent_span_id == parent.span_id and s.name == name]

    (run,) = children(root, "workflow.run")
    assert attrs(run)["workflow"] == "grounded_qa" and attrs(run)["tenant"] == "default"
    assert attrs(run)["run_id"] == answer["run_id"] and attrs(run)["status"] == "succeeded"
    steps = {attrs(s)["step"]: s for s in children(run, "workflow.step")}
    assert set(steps) == {"gather", "generate", "verify"}
    assert attrs(steps["gather"])["type"] == "gather"

    (retrieve,) = children(steps["gather"], "retrieve")
    assert attrs(retrieve)["tenant"] == "default" and attrs(retrieve)["chunks"] >= 1
    (gatherer,) = children(retrieve, "gatherer")
    assert attrs(gatherer)["gatherer"] == "all" and attrs(gatherer)["outcome"] == "ok"
    assert len(children(retrieve, "index.query_batch")) == 1
    (read,) = children(retrieve, "index.retrieve")  # the head's chunks and, for the reranker, vectors
    assert attrs(read)["tenant"] == "default" and attrs(read)["chunks"] >= 1 and attrs(read)["vectors"] is True

    calls = children(steps["generate"], "model.call")
    assert calls and attrs(calls[-1])["provider"] == "local" and attrs(calls[-1])["workflow"] == "grounded_qa"
    assert attrs(calls[-1])["tenant"] == "default" and attrs(calls[-1])["step"] == "generate"
    for s in tree:  # every span nests inside the request, in time too
        assert s.span_id == root.span_id or s.parent_span_id in by_id
        assert root.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano <= root.end_time_unix_nano

    # identifiers and counts only: no document text, no question text
    for s in spans:
        for value in attrs(s).values():
            if isinstance(value, str):
                assert "WireGuard" not in value and "VPN" not in value, (s.name, value)
    ingest = [s for s in spans if s.name == "POST /v1/documents"]
    assert ingest and all(s.trace_id != root.trace_id for s in ingest)  # one trace per request


def test_without_an_endpoint_nothing_is_installed_or_imported(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from app.main import create_app\n"
        "from core import tracing\n"
        "from core.settings import Settings\n"
        f"app = create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "assert not [m for m in app.user_middleware if m.cls.__name__ == 'TracingMiddleware']\n"
        "with tracing.span('x', tenant='t') as s:\n"
        "    s.set_attribute('k', 1)\n"
        "assert not tracing.enabled()\n"
        "assert tracing.span('a') is tracing.span('b')  # one shared no-op\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
