"""Quality gates, conditional steps and input checks, on both store implementations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInput, NotFound
from core.models import Principal
from orchestration.workflows._jsonschema import schema_errors
from orchestration.workflows.engine import WorkflowEngine
from orchestration.workflows.registry import WorkflowRegistry
from orchestration.workflows.spec import parse_spec
from orchestration.workflows.store import InMemoryRunStore, RunRecord

from .conftest import FakeRetriever, ScriptedProvider
from .test_engine import sql_store

pytestmark = pytest.mark.integration

USER = Principal(tenant_id="acme", user="u")

JSON_GATE = """
name: classify
version: 1
steps:
  - id: label
    type: generate
    model: fast
    prompt: "Classify: {{ inputs.question }}"
  - id: check
    type: validate
    target: label
    on_fail: fail
    checks:
      - kind: json_schema
        schema:
          type: object
          required: [category, urgency]
          additionalProperties: false
          properties:
            category: {type: string, enum: [billing, bug, other]}
            urgency: {type: integer, minimum: 1, maximum: 5}
  - id: escalate
    type: generate
    when: "steps.label.text and inputs.question == 'x'"
    prompt: "never"
output: [check]
"""


def engine(text: str, store: Any = None) -> WorkflowEngine:
    return WorkflowEngine(
        store or InMemoryRunStore(),
        FakeRetriever(),
        ScriptedProvider(text),
        registry=WorkflowRegistry([parse_spec(JSON_GATE)]),
    )


def test_json_schema_gate_passes_valid_output() -> None:
    run = asyncio.run(
        engine('{"category": "billing", "urgency": 2}').start("classify", USER, {"question": "q"})
    )
    assert run.status == "succeeded" and run.output is not None and run.output["passed"]


def test_json_schema_gate_failure_fails_the_run_with_reasons(tmp_path: Path) -> None:
    eng = engine('{"category": "sales", "urgency": 9, "x": 1}', sql_store(tmp_path))
    run = asyncio.run(eng.start("classify", USER, {"question": "q"}))
    assert run.status == "failed"
    assert "not one of" in (run.reason or "") and "above 5" in (run.reason or "")
    assert [r.id for r in eng.store.list_runs(status="failed", tenant_id="acme")] == [run.id]
    assert eng.store.list_runs(tenant_id="other") == []


def test_when_false_skips_the_step() -> None:
    eng = engine('{"category": "bug", "urgency": 1}')
    run = asyncio.run(eng.start("classify", USER, {"question": "q"}))
    assert [(e.step_id, e.kind) for e in eng.store.events(run.id)][-1] == ("escalate", "skipped")


def test_unknown_workflow_and_missing_inputs() -> None:
    eng = engine("{}")
    with pytest.raises(NotFound, match="known: classify"):
        asyncio.run(eng.start("nope", USER, {"question": "q"}))
    with pytest.raises(InvalidInput, match="needs inputs: question"):
        asyncio.run(eng.start("classify", USER, {}))


def test_schema_subset() -> None:
    schema = {"type": "array", "items": {"type": "number"}}
    assert schema_errors([1, 2.5], schema) == []
    assert schema_errors([1, True, "x"], schema) == [
        "$[1]: expected number, got bool",
        "$[2]: expected number, got str",
    ]


def test_run_record_roundtrip_sql(tmp_path: Path) -> None:
    store = sql_store(tmp_path)
    store.create_run(RunRecord(id="r1", tenant_id="t", workflow="w", version=1, inputs={"a": [1]}))
    store.append_event("r1", "s", "completed", output={"x": 1})
    store.update_run("r1", status="succeeded", output={"y": 2}, cost_usd=0.5)
    run = store.get_run("r1")
    assert run is not None and (run.status, run.output, run.cost_usd, run.inputs) == (
        "succeeded",
        {"y": 2},
        0.5,
        {"a": [1]},
    )
    assert [(e.seq, e.step_id, e.output) for e in store.events("r1")] == [(0, "s", {"x": 1})]
    assert store.get_run("missing") is None
