from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

import core.tables_runs  # noqa: F401 - registers the run tables on Base
from core.models import Principal
from core.tables import Base
from orchestration.providers.extractive import ExtractiveProvider
from orchestration.workflows.engine import WorkflowEngine
from orchestration.workflows.registry import WorkflowRegistry
from orchestration.workflows.spec import parse_spec
from orchestration.workflows.steps import StepContext
from orchestration.workflows.store import InMemoryRunStore, RunStore

from .conftest import FakeRetriever

pytestmark = pytest.mark.integration


def sql_store(path: Path) -> RunStore:
    engine = create_engine(f"sqlite:///{path / 'runs.db'}")
    Base.metadata.create_all(engine)
    return RunStore(sessionmaker(engine))


class Recorder:
    """Actions that log calls; `fail` maps action -> number of times to fail first."""

    def __init__(self, fail: dict[str, int] | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = dict(fail or {})
        self.delay = delay
        self.active = 0
        self.peak = 0

    def action(self, name: str) -> Any:
        async def run(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
            self.calls.append((name, params))
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.fail.get(name, 0) > 0:
                    self.fail[name] -= 1
                    raise RuntimeError(f"{name} broke")
                return {"done": name, **params}
            finally:
                self.active -= 1

        return run

    def actions(self, *names: str) -> dict[str, Any]:
        return {n: self.action(n) for n in names}


def engine_for(spec_yaml: str, store: Any, rec: Recorder, *names: str, **kw: Any) -> WorkflowEngine:
    registry = WorkflowRegistry([parse_spec(spec_yaml)])
    return WorkflowEngine(store, FakeRetriever(), ExtractiveProvider(), registry=registry,
                          actions=rec.actions(*names), **kw)  # fmt: skip


ADMIN = Principal(tenant_id="acme", user="bob", role="admin")  # type: ignore[arg-type]

SAGA = """
name: saga
version: 1
inputs: []
steps:
  - {id: reserve, type: action, action: reserve, with: {item: "{{ inputs.item }}"},
     compensate: {action: release, with: {item: "{{ steps.reserve.item }}"}}}
  - {id: charge, type: action, action: charge, compensate: {action: refund}}
  - {id: ship, type: action, action: ship}
output: [ship]
"""


def test_saga_compensates_in_reverse_order() -> None:
    rec = Recorder(fail={"ship": 99})
    eng = engine_for(SAGA, InMemoryRunStore(), rec, "reserve", "charge", "ship", "release", "refund")
    run = asyncio.run(eng.start("saga", ADMIN, {"item": "book"}))
    assert run.status == "compensated"
    assert "ship" in (run.reason or "") and "RuntimeError" in (run.reason or "")
    assert [c[0] for c in rec.calls] == ["reserve", "charge", "ship", "refund", "release"]
    assert rec.calls[-1][1] == {"item": "book"}


def test_retries_with_exponential_backoff_then_succeeds() -> None:
    delays: list[float] = []

    async def sleep(s: float) -> None:
        delays.append(s)

    spec = SAGA.replace(
        "{id: ship, type: action, action: ship}", "{id: ship, type: action, action: ship, retries: 2}"
    )
    rec = Recorder(fail={"ship": 2})
    eng = engine_for(spec, InMemoryRunStore(), rec, "reserve", "charge", "ship", sleep=sleep)
    run = asyncio.run(eng.start("saga", ADMIN, {"item": "x"}))
    assert run.status == "succeeded" and run.output == {"done": "ship"}
    assert delays == [0.2, 0.4]
    kinds = [e.kind for e in eng.store.events(run.id) if e.step_id == "ship"]
    assert kinds == ["retrying", "retrying", "completed"]


def test_timeout_then_fallback_output() -> None:
    spec = """
name: slow
version: 1
inputs: []
steps:
  - {id: call, type: action, action: slow, timeout_s: 0.05, fallback: {output: {done: cached}}}
output: [call]
"""
    rec = Recorder(delay=1.0)
    run = asyncio.run(engine_for(spec, InMemoryRunStore(), rec, "slow").start("slow", ADMIN, {}))
    assert run.status == "succeeded"
    assert run.output == {"done": "cached", "fallback": True}


PARALLEL = """
name: fan
version: 1
inputs: []
steps:
  - id: fan
    type: parallel
    max_concurrency: {limit}
    steps:
      - {{id: a, type: action, action: a}}
      - {{id: b, type: action, action: b}}
      - {{id: c, type: action, action: c}}
  - id: pick
    type: branch
    cases: [{{when: "steps.a.done == 'a' and len(steps.fan.results) == 3", goto: good}}]
    default: bad
  - {{id: bad, type: action, action: b}}
  - {{id: good, type: action, action: c}}
output: [good, bad]
"""


def test_parallel_respects_concurrency_limit_and_branch_skips() -> None:
    timings = {}
    for limit in (3, 1):
        rec = Recorder(delay=0.05)
        eng = engine_for(PARALLEL.format(limit=limit), InMemoryRunStore(), rec, "a", "b", "c")
        started = time.perf_counter()
        run = asyncio.run(eng.start("fan", ADMIN, {}))
        timings[limit] = time.perf_counter() - started
        assert run.status == "succeeded"
        assert run.output == {"done": "c"}
        assert rec.peak == limit
        assert "bad" not in {e.step_id for e in eng.store.events(run.id) if e.kind == "completed"}
    assert timings[3] < timings[1]


def test_parallel_child_failure_fails_the_step_unless_partial_allowed() -> None:
    rec = Recorder(fail={"b": 1})
    run = asyncio.run(
        engine_for(PARALLEL.format(limit=2), InMemoryRunStore(), rec, "a", "b", "c").start("fan", ADMIN, {})
    )
    assert run.status == "failed" and "'b'" in (run.reason or "")
    spec = PARALLEL.format(limit=2).replace(
        "max_concurrency: 2", "max_concurrency: 2\n    allow_partial: true"
    )
    rec = Recorder(fail={"b": 1})
    eng = engine_for(spec, InMemoryRunStore(), rec, "a", "b", "c")
    run = asyncio.run(eng.start("fan", ADMIN, {}))
    assert run.status == "succeeded"
    fan = next(e.output for e in eng.store.events(run.id) if e.step_id == "fan" and e.kind == "completed")
    assert fan is not None and "RuntimeError" in fan["errors"]["b"]


class Crash(BaseException):
    """Stands in for the process dying: nothing in the engine catches it."""


def test_restart_resumes_from_last_completed_step(tmp_path: Path) -> None:
    rec = Recorder()
    first = engine_for(SAGA, sql_store(tmp_path), rec, "reserve", "charge", "release", "refund")

    async def crash(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        raise Crash

    first._actions["ship"] = crash
    with pytest.raises(Crash):
        asyncio.run(first.start("saga", ADMIN, {"item": "lamp"}))
    assert [c[0] for c in rec.calls] == ["reserve", "charge"]

    # a new process: fresh engine, same database
    rec2 = Recorder()
    second = engine_for(SAGA, sql_store(tmp_path), rec2, "reserve", "charge", "ship")
    [run] = asyncio.run(second.recover())
    assert run.status == "succeeded"
    assert [c[0] for c in rec2.calls] == ["ship"]  # reserve and charge replayed, not re-run
    steps = [(e.step_id, e.kind) for e in second.store.events(run.id)]
    assert steps == [("reserve", "completed"), ("charge", "completed"), ("ship", "completed")]
