"""The audit trail: one append-only, hash-chained log per tenant.

Every event stores `prev_hash` (the previous event's `hash` in its tenant; 64 zeros for the
first) and `hash = sha256(canonical_json(event without prev_hash/hash) + prev_hash)`, where the
canonical JSON has sorted keys, no whitespace and the timestamp as ISO 8601 UTC with
microseconds. Editing a field breaks that event's hash; deleting or reordering events breaks the
next event's `prev_hash` (or its `seq`); deleting the newest events disagrees with the tenant's
head row. `verify()` walks a chain and reports the first event that does not hold.

Appends are serialized per tenant: a process lock, plus `SELECT ... FOR UPDATE` on the tenant's
row in `audit_heads` (PostgreSQL), so concurrent requests and API replicas never fork a chain;
the unique (tenant_id, seq) constraint refuses a fork even if that were bypassed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from core.errors import CairnError, PermissionDenied
from core.models import Principal, RetrievedChunk, UtcDateTime
from core.tables_security import AuditEvent, AuditHead
from orchestration.types import AnswerEvent, AnswerResult

log = logging.getLogger(__name__)
GENESIS = "0" * 64
_BATCH = 500


class AuditEventPublic(BaseModel):
    id: str
    tenant_id: str
    seq: int
    ts: UtcDateTime
    principal: str
    key_id: str
    role: str
    action: str
    outcome: str  # ok, denied, or an error code (not_found, invalid_input, internal_error, ...)
    targets: dict[str, Any]
    retrieved: list[Any]
    cited: list[Any]
    models: list[str]
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    tenant_id: str
    ok: bool
    events: int  # events checked (up to the first broken one)
    head_hash: str | None = None
    broken_seq: int | None = None
    broken_id: str | None = None
    reason: str | None = None


def _iso(ts: datetime) -> str:
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts.isoformat(timespec="microseconds")


def canonical(row: AuditEvent) -> str:
    body = {
        "id": row.id, "tenant_id": row.tenant_id, "seq": row.seq, "ts": _iso(row.ts), "principal": row.principal,
        "key_id": row.key_id, "role": row.role, "action": row.action, "outcome": row.outcome,
        "targets": row.targets, "retrieved": row.retrieved, "cited": row.cited, "models": row.models,
        "details": row.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(row: AuditEvent, prev_hash: str) -> str:
    return hashlib.sha256((canonical(row) + prev_hash).encode()).hexdigest()


def outcome_of(exc: BaseException) -> str:
    """What an audit event says about a failed action: `denied`, or the error's code."""
    if isinstance(exc, PermissionDenied):
        return "denied"
    if isinstance(exc, CairnError):
        return exc.code
    return "internal_error"


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Details keep JSON scalars and lists of them only, so every event hashes the same after a
    database round trip."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, bool | int | str) or v is None:
            out[str(k)] = v
        elif isinstance(v, list | tuple):
            out[str(k)] = [x if isinstance(x, bool | int | str) else str(x) for x in v]
        else:
            out[str(k)] = str(v)
    return out


class AuditLog:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()

    def record(
        self,
        principal: Principal,
        action: str,
        *,
        outcome: str = "ok",
        targets: dict[str, Any] | None = None,
        retrieved: list[dict[str, str]] | None = None,
        cited: list[dict[str, str]] | None = None,
        models: list[str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEventPublic:
        """Append one event to the principal's tenant chain (committed when this returns)."""
        tenant = principal.tenant_id
        row = AuditEvent(
            id=uuid.uuid4().hex, tenant_id=tenant, ts=datetime.now(UTC), principal=principal.user,
            key_id=principal.key_id, role=principal.role.value, action=action, outcome=outcome,
            targets=_plain(targets or {}), retrieved=list(retrieved or []), cited=list(cited or []),
            models=sorted(set(models or [])), details=_plain(details or {}),
        )
        with self._lock, self._sessions.begin() as s:
            head = self._lock_head(s, tenant)
            row.seq = head.seq + 1
            row.prev_hash = head.hash
            row.hash = event_hash(row, head.hash)
            s.add(row)
            head.seq, head.hash = row.seq, row.hash
        return _public(row)

    def _lock_head(self, s: Session, tenant: str) -> AuditHead:
        dialect = s.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        s.execute(insert(AuditHead).values(tenant_id=tenant, seq=0, hash=GENESIS).on_conflict_do_nothing())
        head = s.scalar(select(AuditHead).where(AuditHead.tenant_id == tenant).with_for_update())
        assert head is not None
        return head

    def events(
        self,
        tenant_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: list[str] | None = None,
    ) -> Iterator[AuditEventPublic]:
        """The tenant's events in chain order, read in batches (for streaming exports)."""
        after = 0
        while True:
            q = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq > after)
            if since is not None:
                q = q.where(AuditEvent.ts >= since)
            if until is not None:
                q = q.where(AuditEvent.ts < until)
            if actions:
                q = q.where(AuditEvent.action.in_(actions))
            with self._sessions() as s:
                rows = s.scalars(q.order_by(AuditEvent.seq).limit(_BATCH)).all()
            yield from (_public(r) for r in rows)
            if len(rows) < _BATCH:
                return
            after = rows[-1].seq

    def tenants(self) -> list[str]:
        with self._sessions() as s:
            heads = set(s.scalars(select(AuditHead.tenant_id)).all())
            heads |= set(s.scalars(select(AuditEvent.tenant_id).distinct()).all())
        return sorted(heads)

    def verify(self, tenant_id: str) -> AuditVerification:
        prev, seq = GENESIS, 0
        with self._sessions() as s:
            head = s.get(AuditHead, tenant_id)
            while True:
                rows = s.scalars(
                    select(AuditEvent).where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq > seq)
                    .order_by(AuditEvent.seq).limit(_BATCH)
                ).all()
                for row in rows:
                    reason = None
                    if row.seq != seq + 1:
                        reason = f"sequence gap: expected event {seq + 1}, found {row.seq} (events were deleted)"
                    elif row.prev_hash != prev:
                        reason = "prev_hash does not match the previous event (an event was deleted or reordered)"
                    elif row.hash != event_hash(row, prev):
                        reason = "hash does not match the event's content (the event was edited)"
                    if reason:
                        return AuditVerification(tenant_id=tenant_id, ok=False, events=seq, broken_seq=row.seq,
                                                 broken_id=row.id, reason=reason)
                    prev, seq = row.hash, row.seq
                if len(rows) < _BATCH:
                    break
        head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
        if (head_seq, head_hash) != (seq, prev):
            return AuditVerification(
                tenant_id=tenant_id, ok=False, events=seq, broken_seq=seq + 1,
                reason=f"the chain ends at event {seq} but its head says {head_seq} (the newest events were deleted)",
            )
        return AuditVerification(tenant_id=tenant_id, ok=True, events=seq, head_hash=prev if seq else None)


def _public(row: AuditEvent) -> AuditEventPublic:
    return AuditEventPublic.model_validate(row, from_attributes=True)


@dataclass
class AuditNote:
    """What one request's audit event will say; a route fills it in, the request's dependency
    (`app.deps.audited`) records it once when the route returns or fails."""

    action: str
    principal: Principal
    commit: Callable[[AuditNote, str], None]
    targets: dict[str, Any] = field(default_factory=dict)
    retrieved: list[dict[str, str]] = field(default_factory=list)
    cited: list[dict[str, str]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    deferred: bool = False
    done: bool = False

    def target(self, **ids: Any) -> None:
        self.targets.update(ids)

    def chunks(self, chunks: Iterable[RetrievedChunk]) -> None:
        self.retrieved = [{"doc_id": c.doc_id, "chunk_id": c.chunk_id} for c in chunks]

    def answer(self, result: AnswerResult) -> AnswerResult:
        self.targets["run_id"] = result.run_id
        self.retrieved = [{"chunk_id": c} for c in result.retrieved]
        self.cited = [{"doc_id": c.doc_id, "chunk_id": c.chunk_id} for c in result.citations]
        if result.provider or result.model:
            self.models = [f"{result.provider or '?'}:{result.model or '?'}"]
        self.details.update(workflow=result.workflow, status=result.status, abstained=result.abstained)
        return result

    def finish(self, outcome: str) -> None:
        if not self.done:
            self.done = True
            self.commit(self, outcome)

    def follow(self, events: AsyncIterator[AnswerEvent]) -> AsyncIterator[AnswerEvent]:
        """For a streamed answer: the event is recorded when the stream ends (with its
        citations), not when the response starts."""
        self.deferred = True
        return self._follow(events)

    async def _follow(self, events: AsyncIterator[AnswerEvent]) -> AsyncIterator[AnswerEvent]:
        outcome = "cancelled"  # the client went away before the end
        try:
            async for e in events:
                if e.type == "final" and e.result is not None:
                    self.answer(e.result)
                    outcome = "ok"
                elif e.type == "error":
                    outcome = e.code or "internal_error"
                yield e
        except Exception as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            self.finish(outcome)  # a short synchronous write: awaiting is not safe while being cancelled
