"""Answer feedback: thumbs up / down on a run, an optional corrected citation, summaries, and
feedback turned into relevance labels over the tenant's corpus.

Who may judge a run is who may read it (`WorkflowEngine.get_run`: its starter and tenant admins),
and a corrected citation may only name a document the judge may read: the SQL ACL join for the
document, the engine's scoped read for a chunk. So feedback can neither reveal nor point at
anything its author could not already see.

Labels (`labels_from_feedback`): the question of each judged run becomes a query; a thumbs-up
makes every document the answer cited relevant (grade 1); a corrected citation makes its document
relevant (grade 2); on a thumbs-down the cited documents get grade 0 (judged not relevant). Several
judgements of one question merge by the highest grade, and a query without any relevant document
is left out (it cannot be scored).
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.services.eval_datasets import AttachedDatasetCreate, EvalDatasetPublic, EvalDatasetService
from core.errors import Conflict, InvalidInput, NotFound, Unavailable
from core.models import AccessScope, Principal, Role, UtcDateTime
from core.protocols import VectorIndex
from core.tables import Document, DocumentAcl
from core.tables_feedback import AnswerFeedback
from orchestration.answers import AnswerService

Rating = Literal["up", "down"]
TOP_REASONS = 5


class InvalidCitation(InvalidInput):
    """The corrected citation does not hold together (chunk of another document, quote absent)."""

    code = "invalid_citation"


class NoFeedbackLabels(InvalidInput):
    code = "no_feedback_labels"


class CorrectedCitation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    doc_id: str = Field(min_length=1, max_length=256)
    chunk_id: str | None = Field(default=None, max_length=64)
    quote: str | None = Field(default=None, min_length=1, max_length=2000)


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Rating
    reason: str | None = Field(default=None, max_length=2000)
    corrected_citation: CorrectedCitation | None = None


class FeedbackPublic(BaseModel):
    feedback_id: str
    run_id: str
    workflow: str
    rating: Rating
    reason: str | None
    corrected_citation: CorrectedCitation | None
    cited_doc_ids: list[str]
    user: str
    replaced: bool  # True when this replaced the caller's earlier feedback on the run
    created_at: UtcDateTime
    updated_at: UtcDateTime


class ReasonCount(BaseModel):
    reason: str
    count: int


class FeedbackCounts(BaseModel):
    up: int = 0
    down: int = 0
    count: int = 0
    acceptance_rate: float | None = None  # up / (up + down); None without feedback


class WorkflowFeedback(FeedbackCounts):
    workflow: str
    top_reasons: list[ReasonCount] = Field(default_factory=list)


class FeedbackSummary(BaseModel):
    tenant_id: str
    scope: Literal["tenant", "own"]  # admins see the tenant's feedback, others their own
    workflow: str | None
    since: UtcDateTime | None
    total: FeedbackCounts
    workflows: list[WorkflowFeedback]
    top_reasons: list[ReasonCount]  # the most frequent reasons given with a thumbs-down


class FeedbackDatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    workflow: str | None = Field(default=None, max_length=64)
    since: datetime | None = None
    acl: list[str] | None = None


class FeedbackDatasetPublic(EvalDatasetPublic):
    feedback_used: int
    queries_skipped: int  # judged questions without any relevant document


def _counts(up: int, down: int) -> dict[str, Any]:
    total = up + down
    return {"up": up, "down": down, "count": total, "acceptance_rate": round(up / total, 4) if total else None}


def _normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def labels_from_feedback(rows: Iterable[AnswerFeedback]) -> tuple[dict[str, str], dict[str, dict[str, int]], int]:
    """(queries, qrels, skipped) from feedback rows, oldest first. Pure: see the module docstring."""
    by_question: dict[str, tuple[str, str, dict[str, int]]] = {}
    for fb in rows:
        key = _normalise(fb.question)
        if not key:
            continue
        _, _, grades = by_question.get(key, ("", "", {}))
        judged: dict[str, int] = {}
        corrected = (fb.corrected or {}).get("doc_id")
        for doc_id in fb.cited_doc_ids:
            if doc_id != corrected:
                judged[doc_id] = 1 if fb.rating == "up" else 0
        if corrected:
            judged[corrected] = 2
        for doc_id, grade in judged.items():
            grades[doc_id] = max(grades.get(doc_id, grade), grade)
        by_question[key] = (fb.run_id, fb.question.strip(), grades)  # the latest judgement names the query
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    skipped = 0
    for run_id, question, grades in by_question.values():
        if not any(g > 0 for g in grades.values()):
            skipped += 1
            continue
        queries[run_id], qrels[run_id] = question, dict(grades)
    return queries, qrels, skipped


class FeedbackService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        answers: AnswerService,
        index: VectorIndex,
        datasets: EvalDatasetService,
    ) -> None:
        self._sessions = sessions
        self._answers = answers
        self._index = index
        self._datasets = datasets

    # ---- give -----------------------------------------------------------------------------

    def give(self, principal: Principal, run_id: str, body: FeedbackCreate) -> FeedbackPublic:
        run = self._answers.engine.get_run(run_id, principal).run  # 404 unless the caller may see it
        if run.status in ("running", "compensating"):
            raise Conflict(f"run {run_id} is still {run.status}; give feedback once it has finished")
        try:
            cited = list(dict.fromkeys(c.doc_id for c in self._answers.result_of(run).citations))
        except Unavailable:
            cited = []  # a failed run cited nothing; a thumbs-down on it is still worth counting
        corrected = self._check_citation(principal, body.corrected_citation) if body.corrected_citation else None
        reason = (body.reason.strip() or None) if body.reason else None
        values = {
            "rating": body.rating, "reason": reason, "corrected": corrected, "cited_doc_ids": cited,
            "question": str(run.inputs.get("question") or ""), "workflow": run.workflow,
        }  # fmt: skip
        try:
            row, replaced = self._upsert(principal, run_id, values)
        except IntegrityError:  # the same caller's concurrent first feedback won the race
            row, replaced = self._upsert(principal, run_id, values)
        metrics.record_feedback(run.workflow, body.rating)
        return _public(row, replaced)

    def _upsert(self, principal: Principal, run_id: str, values: dict[str, Any]) -> tuple[AnswerFeedback, bool]:
        with self._sessions.begin() as s:
            row = s.scalar(
                select(AnswerFeedback).where(
                    AnswerFeedback.tenant_id == principal.tenant_id,
                    AnswerFeedback.run_id == run_id,
                    AnswerFeedback.user == principal.user,
                )
            )
            replaced = row is not None
            if row is None:
                row = AnswerFeedback(
                    id=secrets.token_hex(12), tenant_id=principal.tenant_id, run_id=run_id, user=principal.user
                )
                s.add(row)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = datetime.now(UTC)
            s.flush()
            return row, replaced

    def _check_citation(self, principal: Principal, c: CorrectedCitation) -> dict[str, Any]:
        """The document must be one the caller may read (else 404, as for a missing one); a
        chunk must be that document's and readable; a quote must occur in it (else 422)."""
        with self._sessions() as s:
            readable = s.scalar(
                select(Document.doc_id).where(
                    Document.tenant_id == principal.tenant_id,
                    Document.doc_id == c.doc_id,
                    Document.doc_id.in_(
                        select(DocumentAcl.doc_id).where(
                            DocumentAcl.tenant_id == principal.tenant_id,
                            DocumentAcl.principal.in_(principal.acl_principals),
                        )
                    ),
                )
            )
        if readable is None:
            raise NotFound(f"document {c.doc_id!r} not found", field="corrected_citation.doc_id")
        scope = AccessScope.of(principal)
        if c.chunk_id is not None:
            try:
                chunk_id = str(uuid.UUID(c.chunk_id))
            except ValueError:
                raise InvalidCitation("chunk_id is not a chunk id", field="corrected_citation.chunk_id") from None
            hits = self._index.retrieve(scope, [chunk_id])
            if not hits or hits[0].payload.get("doc_id") != c.doc_id:
                raise InvalidCitation(
                    f"chunk {c.chunk_id!r} is not a chunk of document {c.doc_id!r}",
                    field="corrected_citation.chunk_id",
                )
        else:
            hits = self._index.chunks_of(scope, c.doc_id) if c.quote else []
        if c.quote is not None:
            quote = " ".join(c.quote.split())
            if not any(quote in " ".join(str(h.payload.get("text", "")).split()) for h in hits):
                raise InvalidCitation(
                    "the quote does not occur in the cited document; copy it verbatim",
                    field="corrected_citation.quote",
                )
        return c.model_dump(exclude_none=True)

    # ---- read -----------------------------------------------------------------------------

    def _scoped(self, principal: Principal, workflow: str | None, since: datetime | None) -> Any:
        q = select(AnswerFeedback).where(AnswerFeedback.tenant_id == principal.tenant_id)
        if principal.role is not Role.admin:
            q = q.where(AnswerFeedback.user == principal.user)
        if workflow is not None:
            q = q.where(AnswerFeedback.workflow == workflow)
        if since is not None:
            q = q.where(AnswerFeedback.updated_at >= _utc(since))
        return q

    def summary(
        self, principal: Principal, workflow: str | None = None, since: datetime | None = None
    ) -> FeedbackSummary:
        scoped = self._scoped(principal, workflow, since).subquery()
        with self._sessions() as s:
            counts = s.execute(
                select(scoped.c.workflow, scoped.c.rating, func.count()).group_by(scoped.c.workflow, scoped.c.rating)
            ).all()
            reason = func.lower(func.trim(scoped.c.reason))
            reasons = s.execute(
                select(scoped.c.workflow, reason, func.count())
                .where(scoped.c.rating == "down", scoped.c.reason.is_not(None))
                .group_by(scoped.c.workflow, reason)
            ).all()
        per: dict[str, Counter[str]] = {}
        for wf, rating, n in counts:
            per.setdefault(wf, Counter())[rating] += int(n)
        why: dict[str, Counter[str]] = {}
        for wf, text, n in reasons:
            if text:
                why.setdefault(wf, Counter())[text] += int(n)
        overall: Counter[str] = sum(why.values(), Counter())

        def top(c: Counter[str]) -> list[ReasonCount]:
            return [ReasonCount(reason=r, count=n) for r, n in sorted(c.items(), key=lambda x: (-x[1], x[0]))][
                :TOP_REASONS
            ]

        workflows = [
            WorkflowFeedback(workflow=wf, **_counts(c["up"], c["down"]), top_reasons=top(why.get(wf, Counter())))
            for wf, c in sorted(per.items())
        ]
        up, down = sum(w.up for w in workflows), sum(w.down for w in workflows)
        return FeedbackSummary(
            tenant_id=principal.tenant_id, scope="tenant" if principal.role is Role.admin else "own",
            workflow=workflow, since=_utc(since) if since else None, total=FeedbackCounts(**_counts(up, down)),
            workflows=workflows, top_reasons=top(overall),
        )  # fmt: skip

    # ---- feedback -> labelled dataset -----------------------------------------------------

    def create_dataset(self, principal: Principal, body: FeedbackDatasetCreate) -> FeedbackDatasetPublic:
        """An attached dataset (labelled queries over the tenant's corpus) from the feedback the
        caller may see; documents the caller cannot read are left out of the labels."""
        q = self._scoped(principal, body.workflow, body.since).order_by(AnswerFeedback.updated_at)
        with self._sessions() as s:
            rows = list(s.scalars(q))
        queries, qrels, skipped = labels_from_feedback(rows)
        readable = self._readable(principal, {d for rels in qrels.values() for d in rels})
        for qid in list(qrels):
            qrels[qid] = {d: g for d, g in qrels[qid].items() if d in readable}
            if not any(g > 0 for g in qrels[qid].values()):
                del qrels[qid], queries[qid]
                skipped += 1
        if not qrels:
            raise NoFeedbackLabels(
                "no feedback names a relevant document yet: a thumbs-up on a cited answer or a "
                "corrected citation is needed"
            )
        created = self._datasets.create_attached(
            principal, AttachedDatasetCreate(name=body.name, queries=queries, qrels=qrels, acl=body.acl)
        )
        return FeedbackDatasetPublic(**created.model_dump(), feedback_used=len(rows), queries_skipped=skipped)

    def _readable(self, principal: Principal, doc_ids: set[str]) -> set[str]:
        if not doc_ids:
            return set()
        with self._sessions() as s:
            return set(
                s.scalars(
                    select(DocumentAcl.doc_id)
                    .where(
                        DocumentAcl.tenant_id == principal.tenant_id,
                        DocumentAcl.doc_id.in_(sorted(doc_ids)),
                        DocumentAcl.principal.in_(principal.acl_principals),
                    )
                    .distinct()
                )
            )


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)



def _public(row: AnswerFeedback, replaced: bool) -> FeedbackPublic:
    return FeedbackPublic(
        feedback_id=row.id, run_id=row.run_id, workflow=row.workflow, rating=row.rating,  # type: ignore[arg-type]
        reason=row.reason, corrected_citation=CorrectedCitation(**row.corrected) if row.corrected else None,
        cited_doc_ids=list(row.cited_doc_ids), user=row.user, replaced=replaced, created_at=row.created_at,
        updated_at=row.updated_at,
    )
