"""OpenTelemetry tracing, on only when CAIRN_OTEL__ENDPOINT names an OTLP/HTTP collector.

`configure()` builds a tracer provider of our own (not the process-global one, which can be set
only once and would leak between the apps tests build) exporting in batches to
`<endpoint>/v1/traces`, and installs it behind the `core.tracing` seam that retrieval, workflows
and the model gateway call. `TracingMiddleware` opens one server span per HTTP request, named by
the matched route template (`POST /v1/answers`) and continuing an incoming W3C `traceparent`.

Unset endpoint: the middleware is not installed, `core.tracing.span()` is a shared no-op and the
OpenTelemetry packages are never imported (they are optional dependencies).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from core import tracing
from core.settings import OtelSettings

log = logging.getLogger(__name__)


def traces_url(endpoint: str) -> str:
    """A collector base URL (as in OTEL_EXPORTER_OTLP_ENDPOINT) gets `/v1/traces` appended."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class OtelTracer:
    """`core.tracing.Tracer` over the OpenTelemetry SDK."""

    def __init__(self, settings: OtelSettings) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        assert settings.endpoint is not None
        self._provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        exporter = OTLPSpanExporter(endpoint=traces_url(settings.endpoint), timeout=settings.timeout_s)
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=settings.export_interval_ms)
        )
        self.tracer = self._provider.get_tracer("cairn")

    def span(
        self, name: str, attributes: Mapping[str, tracing.AttributeValue]
    ) -> AbstractContextManager[tracing.Span]:
        return self.tracer.start_as_current_span(name, attributes=dict(attributes))

    def annotate(self, attributes: Mapping[str, tracing.AttributeValue]) -> None:
        from opentelemetry import trace

        current = trace.get_current_span()
        for key, value in attributes.items():
            current.set_attribute(key, value)

    @contextmanager
    def server_span(self, scope: dict[str, Any]) -> Iterator[Any]:
        from opentelemetry import propagate, trace

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET")
        with self.tracer.start_as_current_span(
            method,  # renamed to "<method> <route template>" once routing matched
            context=propagate.extract(headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method},
        ) as span:
            yield span

    def shutdown(self) -> None:
        """Export what is still buffered, then stop."""
        self._provider.shutdown()


_active: OtelTracer | None = None


def configure(settings: OtelSettings) -> OtelTracer | None:
    """Install the OTel tracer when an endpoint is set; None (and nothing imported) otherwise."""
    global _active
    if not settings.endpoint:
        return None
    _active = OtelTracer(settings)
    tracing.set_tracer(_active)
    log.info("tracing to %s", traces_url(settings.endpoint))
    return _active


def shutdown(tracer: OtelTracer | None) -> None:
    global _active
    if tracer is None:
        return
    if _active is tracer:
        _active = None
        tracing.set_tracer(None)
    tracer.shutdown()


class TracingMiddleware:
    """Pure ASGI, outermost: one server span per HTTP request. The span is renamed after routing
    to the route template, so ids in paths never become span names."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        tracer = _active
        if scope["type"] != "http" or tracer is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_with_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with tracer.server_span(scope) as span:
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{scope.get('method', 'GET')} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR))
