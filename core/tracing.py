"""A tiny tracing seam: `span(name, **attributes)` for retrieval, workflows and the gateway.

Why a seam in core and not OpenTelemetry calls in place: `retrieval` and `orchestration` must not
import vendor SDKs (and the OTel packages are optional). The composition root installs a `Tracer`
(app/tracing.py adapts OpenTelemetry) when CAIRN_OTEL__ENDPOINT is set; otherwise `span()` returns
one shared no-op context manager, so untraced code pays a global read and nothing else.

Attributes carry identifiers and counts only (tenant, workflow, step, gatherer, provider, token
counts), never document or prompt text.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol

AttributeValue = str | bool | int | float


class Span(Protocol):
    def set_attribute(self, key: str, value: AttributeValue) -> None: ...


class Tracer(Protocol):
    def span(self, name: str, attributes: Mapping[str, AttributeValue]) -> AbstractContextManager[Span]:
        """Start a span as a child of the current one and make it current inside the block;
        an exception leaving the block marks the span as failed."""
        ...

    def annotate(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Add attributes to the current span (e.g. the tenant, once the API key is checked)."""
        ...


class _NoSpan:
    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()
_tracer: Tracer | None = None


def set_tracer(tracer: Tracer | None) -> None:
    global _tracer
    _tracer = tracer


def enabled() -> bool:
    return _tracer is not None


def span(name: str, **attributes: AttributeValue | None) -> AbstractContextManager[Span]:
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.span(name, {k: v for k, v in attributes.items() if v is not None})


def annotate(**attributes: AttributeValue | None) -> None:
    tracer = _tracer
    if tracer is not None:
        tracer.annotate({k: v for k, v in attributes.items() if v is not None})
