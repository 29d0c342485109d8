"""Run persistence: `RunStore` (SQLAlchemy, SQLite or PostgreSQL) and `InMemoryRunStore` (tests,
and answers served without a database). Both keep runs plus an append-only step-event log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.tables_runs import WorkflowRun, WorkflowStepEvent

TERMINAL = frozenset({"succeeded", "failed", "compensated", "rejected"})


class RunRecord(BaseModel):
    id: str
    tenant_id: str
    workflow: str
    version: int
    spec: dict[str, Any] = Field(default_factory=dict)
    principal: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    status: str = "running"
    output: dict[str, Any] | None = None
    reason: str | None = None
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class StepEvent(BaseModel):
    seq: int
    step_id: str
    kind: str
    attempt: int = 0
    output: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class RunStoreProtocol(Protocol):
    def create_run(self, run: RunRecord) -> None: ...

    def append_event(
        self, run_id: str, step_id: str, kind: str, *, attempt: int = 0,
        output: dict[str, Any] | None = None, error: str | None = None,
    ) -> StepEvent: ...  # fmt: skip

    def update_run(self, run_id: str, **fields: Any) -> None: ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def events(self, run_id: str) -> list[StepEvent]: ...

    def list_runs(self, *, status: str | None = None, tenant_id: str | None = None) -> list[RunRecord]: ...


class InMemoryRunStore:
    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[StepEvent]] = {}
        self._lock = threading.Lock()

    def create_run(self, run: RunRecord) -> None:
        with self._lock:
            self._runs[run.id] = run.model_copy(deep=True)
            self._events[run.id] = []

    def append_event(
        self, run_id: str, step_id: str, kind: str, *, attempt: int = 0,
        output: dict[str, Any] | None = None, error: str | None = None,
    ) -> StepEvent:  # fmt: skip
        with self._lock:
            log = self._events[run_id]
            event = StepEvent(
                seq=len(log), step_id=step_id, kind=kind, attempt=attempt, output=output, error=error
            )
            log.append(event)
            return event.model_copy(deep=True)

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self._lock:
            run = self._runs[run_id]
            self._runs[run_id] = run.model_copy(update={**fields, "updated_at": datetime.now(UTC)})

    def get_run(self, run_id: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        return run.model_copy(deep=True) if run else None

    def events(self, run_id: str) -> list[StepEvent]:
        return [e.model_copy(deep=True) for e in self._events.get(run_id, [])]

    def list_runs(self, *, status: str | None = None, tenant_id: str | None = None) -> list[RunRecord]:
        return [
            r.model_copy(deep=True)
            for r in self._runs.values()
            if (status is None or r.status == status) and (tenant_id is None or r.tenant_id == tenant_id)
        ]


class RunStore:
    """SQL-backed store. Each call is one short transaction, so an event is durable as soon as
    `append_event` returns (that is what lets a restarted process replay it)."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._sessions = session_factory

    def create_run(self, run: RunRecord) -> None:
        with self._sessions.begin() as s:
            s.add(WorkflowRun(**run.model_dump()))

    def append_event(
        self, run_id: str, step_id: str, kind: str, *, attempt: int = 0,
        output: dict[str, Any] | None = None, error: str | None = None,
    ) -> StepEvent:  # fmt: skip
        with self._sessions.begin() as s:
            seq = s.scalar(select(func.count()).where(WorkflowStepEvent.run_id == run_id)) or 0
            row = WorkflowStepEvent(
                run_id=run_id,
                seq=seq,
                step_id=step_id,
                kind=kind,
                attempt=attempt,
                output=output,
                error=error,
            )
            s.add(row)
            s.flush()
            return _event(row)

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self._sessions.begin() as s:
            row = s.get(WorkflowRun, run_id)
            if row is None:
                raise KeyError(run_id)
            for key, value in {**fields, "updated_at": datetime.now(UTC)}.items():
                setattr(row, key, value)

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._sessions() as s:
            row = s.get(WorkflowRun, run_id)
            return _run(row) if row else None

    def events(self, run_id: str) -> list[StepEvent]:
        with self._sessions() as s:
            rows = s.scalars(
                select(WorkflowStepEvent)
                .where(WorkflowStepEvent.run_id == run_id)
                .order_by(WorkflowStepEvent.seq)
            )
            return [_event(r) for r in rows]

    def list_runs(self, *, status: str | None = None, tenant_id: str | None = None) -> list[RunRecord]:
        with self._sessions() as s:
            q = select(WorkflowRun).order_by(WorkflowRun.created_at)
            if status is not None:
                q = q.where(WorkflowRun.status == status)
            if tenant_id is not None:
                q = q.where(WorkflowRun.tenant_id == tenant_id)
            return [_run(r) for r in s.scalars(q)]


def _run(row: WorkflowRun) -> RunRecord:
    return RunRecord.model_validate({c: getattr(row, c) for c in RunRecord.model_fields})


def _event(row: WorkflowStepEvent) -> StepEvent:
    return StepEvent.model_validate({c: getattr(row, c) for c in StepEvent.model_fields})
