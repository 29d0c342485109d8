"""The published OpenAPI schema is a contract: schemathesis fuzzes every operation of a live server.

Each operation gets a few generated requests, valid and invalid (derandomized: the same requests
on every run), sent with a real admin key over a real socket, and every response must pass
schemathesis' checks: no 5xx, a status code, content type, headers and body the schema declares.
Separately, every operation except health, metrics and the UI must answer 401 without a key.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.app.api import ADMIN

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
PUBLIC = {"/healthz", "/metrics", "/", "/ui", "/ui/", "/ui/{name}"}
EXAMPLES_PER_MODE = 6
BUDGET_S = 120
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def seed_corpus(base: str) -> None:
    for name, text in [("leave.txt", "Employees get 25 days of paid leave per year."),
                       ("vpn.txt", "Connect to the VPN before opening the payroll portal.")]:
        r = requests.post(f"{base}/v1/documents", headers=AUTH, files={"file": (name, text.encode(), "text/plain")},
                          data={"metadata": json.dumps({"title": name, "acl": ["tenant:*"]})}, timeout=30)
        assert r.status_code in (200, 202), r.text


def fuzz(operation: Any, base: str, mode: GenerationMode, session: requests.Session) -> list[str]:
    problems: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_MODE, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.headers = {**(case.headers or {}), **AUTH}  # a generated Authorization would be refused
        response = case.call(base_url=base, session=session, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=AUTH)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid: the operation takes no input (negative mode)
        assert mode is GenerationMode.NEGATIVE, operation.label
    except (Exception, BaseExceptionGroup) as exc:  # one report per operation and mode, all gathered below
        problems.append(f"{operation.label} ({mode.value}): {type(exc).__name__}: {str(exc)[:1500]}")
    return problems


def first_case(operation: Any) -> Any:
    """One valid request for the operation (hypothesis' `.example()` is not for tests)."""
    found: list[Any] = []

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(max_examples=1, derandomize=True, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def pick(case: Any) -> None:
        found.append(case)

    pick()
    return found[0]


def unauthenticated_answers(schema: Any, base: str, session: requests.Session) -> tuple[int, list[str]]:
    """(operations checked, those that did not answer 401 + `WWW-Authenticate: Bearer` without a key)."""
    open_ops: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        op = result.ok()
        response = first_case(op).call(base_url=base, session=session, timeout=30)
        if op.path in PUBLIC:
            assert response.status_code < 400, (op.label, response.status_code)
            continue
        checked += 1
        if response.status_code != 401 or response.headers.get("www-authenticate") != ["Bearer"]:
            open_ops.append(f"{op.label}: {response.status_code} {response.text[:200]}")
    return checked, open_ops


def test_every_operation_honours_the_schema_and_needs_a_key(live_server) -> None:  # type: ignore[no-untyped-def]
    """One server for both checks (starting one costs more than either check). Nothing is
    excluded: no operation streams forever (SSE answers and exports end)."""
    base = live_server()
    seed_corpus(base)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    started = time.monotonic()
    with requests.Session() as session:
        checked, open_ops = unauthenticated_answers(schema, base, session)
        assert checked > 20
        assert not open_ops, "answered without a key:\n" + "\n".join(open_ops)

        problems: list[str] = []
        for result in schema.get_all_operations():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                problems += fuzz(result.ok(), base, mode, session)
    elapsed = time.monotonic() - started
    assert not problems, f"{len(problems)} operations broke their contract:\n\n" + "\n\n".join(problems)
    assert elapsed < BUDGET_S, f"fuzzing took {elapsed:.0f} s"
