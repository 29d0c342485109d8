"""Retention and erasure: purge expired documents, erase documents by id or by data subject.

Erasing a document removes every version, its chunks from the index, stored originals no other
document shares, its PII occurrence records and the vault entries no remaining document needs;
workflow runs that cited or retrieved it keep their chunk ids, but their quotes and chunk texts,
and the answer text of any output citing it, are replaced by `[erased]`. Cairn keeps no answer
cache, so there is none to clear.
"""

from __future__ import annotations

import copy
import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from sqlalchemy import Text, and_, cast, delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from app.services.audit import AuditNote
from app.services.documents import DocumentService
from app.services.pii_vault import PiiVault
from core.errors import PermissionDenied
from core.models import AccessScope, Principal, UtcDateTime
from core.protocols import VectorIndex
from core.tables import Document, DocumentVersion
from core.tables_governance import PiiOccurrence, PiiVaultEntry
from core.tables_runs import WorkflowRun, WorkflowStepEvent
from ingestion.pii import subject_forms

log = logging.getLogger(__name__)
ERASED = "[erased]"
MIN_SUBJECT_CHARS = 3
_DATETIME = TypeAdapter(datetime)


class ErasedDocument(BaseModel):
    doc_id: str
    title: str
    versions: int
    chunks: int
    blobs: int
    matched_by: list[str] = Field(default_factory=list)  # subject erasure: "pii_hash" and/or "text"


class ErasureResult(BaseModel):
    erased: list[ErasedDocument] = Field(default_factory=list)
    not_found: list[str] = Field(default_factory=list)
    vault_entries: int = 0  # encrypted values removed because no remaining document holds them
    runs_redacted: int = 0
    dry_run: bool = False


class PurgeResult(ErasureResult):
    cutoff: UtcDateTime  # documents whose effective_to is before this were purged


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    doc_ids: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    subject: str | None = Field(default=None, max_length=1000)
    dry_run: bool = False  # report what would be erased, erase nothing

    @model_validator(mode="after")
    def _one_target(self) -> ErasureRequest:
        if (self.doc_ids is None) == (self.subject is None):
            raise ValueError("give exactly one of doc_ids or subject")
        if self.subject is not None and len(self.subject.strip()) < MIN_SUBJECT_CHARS:
            raise ValueError(f"subject must be at least {MIN_SUBJECT_CHARS} characters")
        return self


class GovernanceService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        documents: DocumentService,
        index: VectorIndex,
        vault: PiiVault,
        retention_grace_days: float,
    ) -> None:
        self._sessions = sessions
        self._documents = documents
        self._index = index
        self._vault = vault
        self._grace = timedelta(days=retention_grace_days)

    # ---- erasure -----------------------------------------------------------------------------

    def erase_document(self, principal: Principal, doc_id: str) -> ErasureResult:
        """`DELETE /v1/documents/{id}?erase=true`: whoever may delete the document may erase it."""
        if not principal.can_write():
            raise PermissionDenied("erasing needs the editor or admin role")
        self._documents.get(principal, doc_id)  # 404 unless the caller can see it
        return self.erase(principal.tenant_id, [doc_id])

    def request(self, admin: Principal, req: ErasureRequest) -> ErasureResult:
        """`POST /v1/admin/erasure`: by document ids or by data subject, within the admin's tenant."""
        tenant = admin.tenant_id
        if req.subject is not None:
            matches = self.find_subject(tenant, req.subject)
            if req.dry_run:
                return ErasureResult(erased=self._describe(tenant, matches), dry_run=True)
            result = self.erase(tenant, list(matches))
            for doc in result.erased:
                doc.matched_by = sorted(matches[doc.doc_id])
            return result
        ids = list(dict.fromkeys(req.doc_ids or []))
        if req.dry_run:
            described = self._describe(tenant, {d: set() for d in ids})
            found = {d.doc_id for d in described}
            return ErasureResult(erased=described, not_found=[d for d in ids if d not in found], dry_run=True)
        return self.erase(tenant, ids)

    def subject_hmac(self, tenant_id: str, subject: str) -> str:
        """How the audit trail names a data subject: the keyed hash of the trimmed, lower-cased
        subject (the text form `find_subject` also searches under; e-mail addresses hash exactly
        as their recorded occurrences do), never the value."""
        return self._vault.keys.mac(tenant_id, subject.strip().lower())

    def erase(self, tenant_id: str, doc_ids: Iterable[str]) -> ErasureResult:
        result = ErasureResult()
        gone: list[str] = []
        for doc_id in doc_ids:
            removed = self._documents.remove(tenant_id, doc_id)
            if removed is None:
                result.not_found.append(doc_id)
            else:
                result.erased.append(ErasedDocument(
                    doc_id=removed.doc_id, title=removed.title, versions=removed.versions,
                    chunks=removed.chunks, blobs=removed.blobs,
                ))
            gone.append(doc_id)
        if gone:
            result.vault_entries = self._forget_occurrences(tenant_id, gone)
            result.runs_redacted = self._redact_runs(tenant_id, set(gone))
        if result.erased:
            log.info("erased %d documents of tenant %s", len(result.erased), tenant_id)
        return result

    def find_subject(self, tenant_id: str, subject: str) -> dict[str, set[str]]:
        """doc_id -> how it matched: `pii_hash` (a detected value with this keyed hash, whatever
        the policy did with it) and/or `text` (the subject string as a whole word or phrase in a
        live chunk or the title, case-insensitive: finds values the detectors do not know, such
        as names; "Tom" matches "tom" and "Tom's", never "custom" or "bottom")."""
        matches: dict[str, set[str]] = defaultdict(set)
        macs = [self._vault.keys.mac(tenant_id, form) for form in subject_forms(subject)]
        with self._sessions() as s:
            hashed = s.scalars(
                select(PiiOccurrence.doc_id)
                .where(PiiOccurrence.tenant_id == tenant_id, PiiOccurrence.value_hmac.in_(macs))
                .distinct()
            ).all()
            docs = s.execute(
                select(Document.doc_id, Document.title, Document.acl, Document.current_version)
                .where(Document.tenant_id == tenant_id)
            ).tuples().all()
        for doc_id in hashed:
            matches[doc_id].add("pii_hash")
        needle = _whole_word(subject)
        for doc_id, title, acl, current in docs:
            if needle.search((title or "").lower()):
                matches[doc_id].add("text")
            elif current and acl and self._chunks_contain(tenant_id, doc_id, acl, needle):
                matches[doc_id].add("text")
        return dict(matches)

    def _chunks_contain(self, tenant_id: str, doc_id: str, acl: list[str], needle: re.Pattern[str]) -> bool:
        """An exact scan of one document's live chunks (the engine has no substring match; a
        BM25 query could only rank candidates and might miss one)."""
        hits = self._index.chunks_of(AccessScope(tenant_id, tuple(acl)), doc_id)
        return any(needle.search(str(h.payload.get("text", "")).lower()) for h in hits)

    def _describe(self, tenant_id: str, matches: dict[str, set[str]]) -> list[ErasedDocument]:
        out: list[ErasedDocument] = []
        with self._sessions() as s:
            for doc_id, how in matches.items():
                doc = s.get(Document, (tenant_id, doc_id))
                if doc is None:
                    continue
                versions = s.scalars(select(DocumentVersion).where(
                    DocumentVersion.tenant_id == tenant_id, DocumentVersion.doc_id == doc_id)).all()
                chunks = sum(v.chunk_count for v in versions if v.version == doc.current_version)
                out.append(ErasedDocument(doc_id=doc_id, title=doc.title, versions=len(versions), chunks=chunks,
                                          blobs=len({v.content_hash for v in versions}), matched_by=sorted(how)))
        return out

    def _forget_occurrences(self, tenant_id: str, doc_ids: list[str]) -> int:
        """Drop the documents' occurrence records, then every vault entry no other document
        still refers to. Returns the number of vault entries removed."""
        with self._sessions.begin() as s:
            macs = set(s.scalars(select(PiiOccurrence.value_hmac).where(
                PiiOccurrence.tenant_id == tenant_id, PiiOccurrence.doc_id.in_(doc_ids))).all())
            s.execute(delete(PiiOccurrence).where(
                PiiOccurrence.tenant_id == tenant_id, PiiOccurrence.doc_id.in_(doc_ids)))
            if not macs:
                return 0
            still_used = set(s.scalars(select(PiiOccurrence.value_hmac).where(
                PiiOccurrence.tenant_id == tenant_id, PiiOccurrence.value_hmac.in_(macs))).all())
            orphaned = macs - still_used
            if not orphaned:
                return 0
            removed = s.execute(delete(PiiVaultEntry).where(
                PiiVaultEntry.tenant_id == tenant_id, PiiVaultEntry.value_hmac.in_(orphaned)))
            return int(getattr(removed, "rowcount", 0) or 0)

    def _redact_runs(self, tenant_id: str, doc_ids: set[str]) -> int:
        """Quotes and chunk texts of erased documents in run outputs and step events. The SQL
        LIKE only narrows the rows to read; the rewrite itself matches `doc_id` exactly."""
        mentions = [_mentions(WorkflowRun.output, d) for d in doc_ids]
        redacted: set[str] = set()
        with self._sessions.begin() as s:
            for run in s.scalars(select(WorkflowRun).where(WorkflowRun.tenant_id == tenant_id, or_(*mentions))):
                new, changed = _redact(run.output, doc_ids)
                if changed:
                    run.output = new
                    redacted.add(run.id)
            events = s.scalars(
                select(WorkflowStepEvent)
                .join(WorkflowRun, WorkflowRun.id == WorkflowStepEvent.run_id)
                .where(WorkflowRun.tenant_id == tenant_id, or_(*[_mentions(WorkflowStepEvent.output, d)
                                                                 for d in doc_ids]))
            )
            for event in events:
                new, changed = _redact(event.output, doc_ids)
                if changed:
                    event.output = new
                    redacted.add(event.run_id)
        return len(redacted)

    # ---- retention ---------------------------------------------------------------------------

    def purge(self, tenant_id: str | None = None, now: datetime | None = None) -> PurgeResult:
        """Erase documents whose latest version's `effective_to` is older than the retention
        grace; one tenant (`POST /v1/admin/purge`) or all of them (the schedule)."""
        cutoff = (now or datetime.now(UTC)) - self._grace
        q = select(Document.tenant_id, Document.doc_id, DocumentVersion.meta).join(
            DocumentVersion,
            and_(DocumentVersion.tenant_id == Document.tenant_id, DocumentVersion.doc_id == Document.doc_id,
                 DocumentVersion.version == Document.latest_version),
        )
        if tenant_id is not None:
            q = q.where(Document.tenant_id == tenant_id)
        expired: dict[str, list[str]] = defaultdict(list)
        with self._sessions() as s:
            for tenant, doc_id, meta in s.execute(q).tuples():
                end = _effective_to(meta)
                if end is not None and end < cutoff:
                    expired[tenant].append(doc_id)
        result = PurgeResult(cutoff=cutoff)
        for tenant, ids in expired.items():
            part = self.erase(tenant, ids)
            result.erased += part.erased
            result.vault_entries += part.vault_entries
            result.runs_redacted += part.runs_redacted
        return result

    def purge_due(self) -> list[str]:
        """The scheduler's tick: purge every tenant, return the erased document ids."""
        return [d.doc_id for d in self.purge().erased]


def note_erasure(audit: AuditNote, result: ErasureResult) -> None:
    """An erasure's audit event: what was erased, by id and count only (titles and matched text
    can hold the subject)."""
    audit.target(doc_ids=[d.doc_id for d in result.erased])
    audit.details.update(not_found=len(result.not_found), vault_entries=result.vault_entries,
                         runs_redacted=result.runs_redacted)


def _whole_word(subject: str) -> re.Pattern[str]:
    """The lower-cased subject not directly preceded or followed by a word character."""
    return re.compile(rf"(?<!\w){re.escape(subject.strip().lower())}(?!\w)")


def _effective_to(meta: dict[str, Any] | None) -> datetime | None:
    raw = (meta or {}).get("effective_to")
    if not raw:
        return None
    value = _DATETIME.validate_python(raw)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _mentions(column: Any, doc_id: str) -> Any:
    """A cheap prefilter on the JSON text; ids JSON would escape are matched by any row."""
    if doc_id.isascii() and doc_id.isprintable() and not any(ch in doc_id for ch in '"\\'):
        return cast(column, Text).contains(doc_id, autoescape=True)
    return column.isnot(None)


def _redact(value: Any, doc_ids: set[str]) -> tuple[Any, bool]:
    """A copy of `value` where every object carrying an erased `doc_id` has its `text`,
    `quote` and `quotes[].text` replaced by [erased], and so has the `answer` and `text` of
    every output with a citation of an erased document (the answer restates what it cited);
    ids and offsets stay."""
    out = copy.deepcopy(value)
    changed = False

    def walk(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            if node.get("doc_id") in doc_ids:
                for key in ("text", "quote"):
                    if isinstance(node.get(key), str) and node[key] != ERASED:
                        node[key], changed = ERASED, True
                for q in node.get("quotes") or []:
                    if isinstance(q, dict) and q.get("text") != ERASED:
                        q["text"], changed = ERASED, True
            citations = node.get("citations")
            if isinstance(citations, list) and any(
                isinstance(c, dict) and c.get("doc_id") in doc_ids for c in citations
            ):
                for key in ("answer", "text"):
                    if isinstance(node.get(key), str) and node[key] != ERASED:
                        node[key], changed = ERASED, True
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(out)
    return out, changed

