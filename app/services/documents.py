"""Documents and their versions: accept an upload, run its ingest job, list, get, delete.

Version swap protocol (works the same with one process or many workers):
1. the new version's chunks are upserted (deterministic ids, so a retried job overwrites);
2. `documents.current_version` is advanced with a conditional UPDATE (only if it is older);
3. if that UPDATE won, older versions' chunks are deleted; if it lost (a newer version or a
   delete got there first), this version's own chunks are deleted instead.
A concurrent search therefore always finds some version; `keep_newest_versions` in the query
path removes the rare overlap between steps 1 and 3.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.services.blobs import BlobStore
from app.services.document_models import DocumentPublic, DocumentsPublic, SubmitResult, public_document
from core.errors import CairnError, Conflict, EmptyDocument, InvalidInput, NotFound, PermissionDenied
from core.models import JOB_PROGRESS, DocumentMetadata, IndexPoint, JobState, Principal, Role
from core.protocols import VectorIndex
from core.tables import Document, DocumentAcl, DocumentVersion, Job, utcnow
from core.tables_governance import PiiOccurrence
from ingestion.parsing import detect_format
from ingestion.pipeline import Chunked, IngestionPipeline, VersionInput, VersionRef

log = logging.getLogger(__name__)
_ACL = re.compile(r"^(user|group):[A-Za-z0-9._@+\-]{1,200}$|^tenant:\*$")


@dataclass(frozen=True)
class ReadyVersion:
    """An embedded document version waiting to go live."""

    job_id: str
    ref: VersionRef
    points: list[IndexPoint]
    acl: list[str]
    title: str
    char_count: int


@dataclass
class Removed:
    doc_id: str
    title: str
    versions: int
    chunks: int  # of the live version (older versions' chunks were already gone)
    blobs: int  # stored originals deleted (one shared with another document stays)


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str
    content_type: str | None


def resolve_acl(principal: Principal, acl: list[str] | None) -> list[str]:
    """The uploader always keeps access to what they upload; everything else is explicit."""
    entries = list(acl or [])
    for entry in entries:
        if not _ACL.match(entry):
            raise InvalidInput(
                f"ACL entry {entry!r} is not valid: use 'user:<name>', 'group:<name>' or 'tenant:*'",
                field="acl",
            )
    return sorted({*entries, f"user:{principal.user}"})


def visible(principal: Principal, acl: list[str]) -> bool:
    return not set(principal.acl_principals).isdisjoint(acl)


class DocumentService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        pipeline: IngestionPipeline,
        index: VectorIndex | None,
        enqueue: Callable[[str], None],
        admit: Callable[[], None] = lambda: None,
        unindex: Callable[[str], None] | None = None,
        pii_redacts: Callable[[str], bool] | None = None,
    ) -> None:
        self._sessions = sessions
        # tenant -> whether its PII policy now masks or tokenizes anything (PiiVault.redacts)
        self._pii_redacts = pii_redacts
        self._blobs = blobs
        self._pipeline = pipeline
        self._index = index
        self._enqueue = enqueue
        self._admit = admit  # raises RateLimited / Unavailable when new work cannot be queued
        # a process without the index (a Celery worker beside the embedded engine) hands
        # deletions to the index owner as `unindex` jobs (app/handoff.py)
        self._unindex = unindex

    # ---- accept ---------------------------------------------------------------------------

    def submit(self, principal: Principal, upload: Upload, meta: DocumentMetadata) -> SubmitResult:
        if not principal.can_write():
            raise PermissionDenied("uploading needs the editor or admin role")
        if not upload.data.strip():
            raise EmptyDocument("the uploaded file is empty")
        detect_format(upload.data, upload.filename, upload.content_type)  # 415 now, not a failed job
        self._admit()
        acl = resolve_acl(principal, meta.acl)
        if meta.effective_from and meta.effective_to and meta.effective_to <= meta.effective_from:
            raise InvalidInput("effective_to must be after effective_from", field="effective_to")
        doc_id = meta.doc_id or secrets.token_hex(12)
        meta = meta.model_copy(update={"doc_id": doc_id, "title": meta.title or upload.filename, "acl": acl})
        meta_json = meta.model_dump(mode="json")
        digest = self._blobs.put(principal.tenant_id, upload.data)

        with self._sessions.begin() as s:
            doc = s.get(Document, (principal.tenant_id, doc_id), with_for_update=True)
            if doc is not None and not visible(principal, doc.acl):
                raise Conflict(f"document id {doc_id!r} is not available", field="doc_id")
            if doc is not None:
                last = s.get(DocumentVersion, (principal.tenant_id, doc_id, doc.latest_version))
                if last and last.content_hash == digest and last.meta == meta_json and last.status != "failed":
                    job_id = s.scalar(
                        select(Job.id).where(
                            Job.tenant_id == principal.tenant_id, Job.doc_id == doc_id, Job.version == last.version
                        )
                    )
                    return SubmitResult(
                        document_id=doc_id, version=last.version, job_id=job_id or "", unchanged=True
                    )
            if doc is None:
                doc = Document(
                    tenant_id=principal.tenant_id, doc_id=doc_id, created_by=principal.user, current_version=0,
                    latest_version=0, acl=acl, title=meta.title or "", source=meta.source,
                )
                s.add(doc)
                s.flush()
            version = doc.latest_version + 1
            doc.latest_version = version
            doc.updated_at = utcnow()
            if doc.current_version == 0:
                doc.status, doc.acl, doc.title = "queued", acl, meta.title or ""
                _replace_acl_rows(s, principal.tenant_id, doc_id, acl)
            s.add(
                DocumentVersion(
                    tenant_id=principal.tenant_id, doc_id=doc_id, version=version, content_hash=digest,
                    filename=upload.filename, content_type=upload.content_type or "",
                    size_bytes=len(upload.data), meta=meta_json, status="queued",
                )
            )
            job = Job(
                id=secrets.token_hex(12), tenant_id=principal.tenant_id, kind="ingest", doc_id=doc_id,
                version=version, created_by=principal.user, state=JobState.queued.value,
            )
            s.add(job)
        self._dispatch(job.id)
        return SubmitResult(document_id=doc_id, version=version, job_id=job.id)

    def _dispatch(self, job_id: str) -> None:
        """Enqueue after the commit, so a worker never sees a job that is not stored. If the queue
        fails now, the job is still stored as queued and the recovery sweep enqueues it later."""
        try:
            self._enqueue(job_id)
        except Exception:
            log.warning("could not enqueue job %s now; the recovery sweep will", job_id, exc_info=True)

    def retry(self, principal: Principal, job_id: str) -> None:
        """Put a failed ingest job back in the queue (for example after its retries ran out
        while a dependency was down). The stored original is reused."""
        if not principal.can_write():
            raise PermissionDenied("retrying a job needs the editor or admin role")
        self._admit()
        with self._sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None or job.tenant_id != principal.tenant_id or (
                job.created_by != principal.user and principal.role is not Role.admin
            ):
                raise NotFound(f"job {job_id!r} not found")
            if job.kind != "ingest" or job.state != JobState.failed.value:
                raise Conflict(f"only failed ingest jobs can be retried; this one is {job.state}")
            ver = s.get(DocumentVersion, (job.tenant_id, job.doc_id or "", job.version or 0))
            if ver is None:
                raise Conflict("the document of this job was deleted; upload it again")
            ver.status, ver.error = "queued", None
            job.state, job.error, job.progress, job.finished_at = JobState.queued.value, None, 0.0, None
            job.updated_at = utcnow()
        self._dispatch(job_id)

    # ---- run ------------------------------------------------------------------------------

    def run_jobs(self, job_ids: list[str], publish: Callable[[list[ReadyVersion]], None] | None = None) -> None:
        """Process a batch of ingest jobs: each document is parsed and chunked on its own (a bad
        one fails only its job), then all their chunks are embedded in one model call.

        `publish` receives the embedded versions; by default they go live here. A Celery worker
        without write access to the embedded engine passes one that hands them to the index
        owner, which calls `finish()` (see app/worker.py)."""
        chunked: list[tuple[str, Chunked]] = []
        items = [(job_id, self._load(job_id)) for job_id in job_ids]
        self._set_states([j for j, item in items if item is not None], JobState.parsing)
        for job_id, item in items:
            if item is None:
                continue
            try:
                chunked.append((job_id, self._pipeline.parse_and_chunk(item)))
            except Exception as exc:  # recorded as the job reason, never raised
                self._fail(job_id, item.ref, _reason(job_id, exc), cleanup=False)
        if not chunked:
            return
        self._set_states([j for j, _ in chunked], JobState.embedding)
        try:
            prepared = self._pipeline.embed([c for _, c in chunked])
        except Exception as exc:
            for job_id, c in chunked:
                self._fail(job_id, c.item.ref, _reason(job_id, exc), cleanup=False)
            return
        ready = [
            ReadyVersion(
                job_id=job_id, ref=c.item.ref, points=version.points, acl=c.item.acl,
                title=c.item.meta.title or c.item.filename, char_count=len(version.parsed.text),
            )
            for (job_id, c), version in zip(chunked, prepared, strict=True)
        ]
        (publish or self.finish_all)(ready)

    def fail_jobs(self, job_ids: list[str], reason: str) -> None:
        """Give up on unfinished jobs (a worker's retries ran out); finished ones keep their state."""
        for job_id in job_ids:
            with self._sessions() as s:
                job = s.get(Job, job_id)
                if job is None or job.state in (JobState.indexed.value, JobState.failed.value):
                    continue
                ref = VersionRef(job.tenant_id, job.doc_id or "", job.version or 0, "")
            self._fail(job_id, ref, reason, cleanup=self._index is not None)

    def finish_all(self, ready: list[ReadyVersion]) -> None:
        for r in ready:
            self.finish(r)

    def finish(self, r: ReadyVersion) -> None:
        """Make an embedded version live (or superseded) and close its job. Idempotent."""
        try:
            went_live = self._go_live(r.ref, r.points, r.acl, r.title)
        except Exception as exc:
            self._fail(r.job_id, r.ref, _reason(r.job_id, exc))
            return
        with self._sessions.begin() as s:
            v = s.get(DocumentVersion, (r.ref.tenant_id, r.ref.doc_id, r.ref.version))
            if v is not None:
                v.status = "indexed" if went_live else "superseded"
                v.chunk_count = len(r.points)
                v.char_count = r.char_count
        self._set_state(r.job_id, JobState.indexed)

    def _load(self, job_id: str) -> VersionInput | None:
        with self._sessions() as s:
            job = s.get(Job, job_id)
            if job is None or job.kind != "ingest" or job.state in (JobState.indexed.value, JobState.failed.value):
                return None  # idempotent: a redelivered task for a finished (or non-ingest) job does nothing
            tenant_id, doc_id, version = job.tenant_id, job.doc_id or "", job.version or 0
            ver = s.get(DocumentVersion, (tenant_id, doc_id, version))
        if ver is None:
            self._set_state(job_id, JobState.failed, error="the document was deleted before it was processed")
            return None
        meta = DocumentMetadata.model_validate(ver.meta)
        ref = VersionRef(tenant_id, doc_id, version, ver.content_hash)
        try:
            data = self._blobs.get(tenant_id, ver.content_hash)
        except OSError:
            self._fail(job_id, ref, "the stored original of this document is missing")
            return None
        return VersionInput(ref, data, ver.filename, ver.content_type or None, meta, meta.acl or [])

    def _require_index(self) -> VectorIndex:
        if self._index is None:
            raise RuntimeError("this process has no index: it hands embedded versions to the index owner")
        return self._index

    def _go_live(self, ref: VersionRef, points: list[IndexPoint], acl: list[str], title: str) -> bool:
        index = self._require_index()
        index.upsert(points)
        with self._sessions.begin() as s:
            won = cast(CursorResult[Any], s.execute(
                update(Document)
                .where(
                    Document.tenant_id == ref.tenant_id,
                    Document.doc_id == ref.doc_id,
                    Document.current_version < ref.version,
                )
                .values(current_version=ref.version, status="indexed", acl=acl, title=title, updated_at=utcnow())
            )).rowcount == 1
            if won:
                _replace_acl_rows(s, ref.tenant_id, ref.doc_id, acl)
        if won:
            index.delete_versions(ref.tenant_id, ref.doc_id, below=ref.version)
        else:
            index.delete_versions(ref.tenant_id, ref.doc_id, only=ref.version)
        return won

    def _fail(self, job_id: str, ref: VersionRef, reason: str, cleanup: bool = True) -> None:
        """`cleanup` removes chunks a failed go-live may have written; before that step the
        index holds nothing of this version."""
        if cleanup:
            try:
                self._require_index().delete_versions(ref.tenant_id, ref.doc_id, only=ref.version)
            except CairnError:
                log.warning("could not remove partial chunks of %s v%s", ref.doc_id, ref.version)
        with self._sessions.begin() as s:
            v = s.get(DocumentVersion, (ref.tenant_id, ref.doc_id, ref.version))
            if v is not None:
                v.status, v.error = "failed", reason
            doc = s.get(Document, (ref.tenant_id, ref.doc_id))
            if doc is not None and doc.current_version == 0:
                doc.status = "failed"
        self._set_state(job_id, JobState.failed, error=reason)

    def _set_states(self, job_ids: list[str], state: JobState) -> None:
        with self._sessions.begin() as s:
            s.execute(
                update(Job)
                .where(Job.id.in_(job_ids))
                .values(state=state.value, progress=JOB_PROGRESS[state], updated_at=utcnow())
            )

    def _set_state(self, job_id: str, state: JobState, error: str | None = None) -> None:
        with self._sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                return
            job.state = state.value
            job.updated_at = utcnow()
            if state is JobState.failed:
                job.error = error
                job.finished_at = utcnow()
            else:
                job.progress = JOB_PROGRESS[state]
                if state is JobState.indexed:
                    job.finished_at = utcnow()

    # ---- read / delete --------------------------------------------------------------------

    def _visible_doc(self, s: Session, principal: Principal, doc_id: str) -> Document:
        doc = s.get(Document, (principal.tenant_id, doc_id))
        if doc is None or not visible(principal, doc.acl):
            raise NotFound(f"document {doc_id!r} not found")
        return doc

    def get(self, principal: Principal, doc_id: str) -> DocumentPublic:
        with self._sessions() as s:
            doc = self._visible_doc(s, principal, doc_id)
            versions = s.scalars(
                select(DocumentVersion)
                .where(DocumentVersion.tenant_id == principal.tenant_id, DocumentVersion.doc_id == doc_id)
                .order_by(DocumentVersion.version)
            ).all()
            shown = doc.current_version or doc.latest_version
            counts = s.execute(
                select(PiiOccurrence.pii_type, func.sum(PiiOccurrence.count))
                .where(PiiOccurrence.tenant_id == principal.tenant_id, PiiOccurrence.doc_id == doc_id,
                       PiiOccurrence.version == shown)
                .group_by(PiiOccurrence.pii_type)
            ).tuples().all()
            public = public_document(doc, list(versions))
            public.pii_counts = {kind: int(n) for kind, n in counts}
            return public

    def original(self, principal: Principal, doc_id: str, version: int | None = None) -> tuple[bytes, str, str]:
        """(bytes, filename, content type) of a stored original, for a caller who may see the
        document. The original holds PII exactly as uploaded, so a version whose values the
        tenant's policy masked or tokenized in the index is only handed to `pii:read` holders,
        and so is a version not scanned yet (queued, processing, failed) while the tenant's
        policy masks or tokenizes any type: nobody knows yet what it holds."""
        with self._sessions() as s:
            doc = self._visible_doc(s, principal, doc_id)
            wanted = version if version is not None else (doc.current_version or doc.latest_version)
            ver = s.get(DocumentVersion, (principal.tenant_id, doc_id, wanted))
            if ver is None:
                raise NotFound(f"document {doc_id!r} has no version {wanted}")
            redacted = s.scalar(
                select(PiiOccurrence.value_hmac).where(
                    PiiOccurrence.tenant_id == principal.tenant_id, PiiOccurrence.doc_id == doc_id,
                    PiiOccurrence.version == wanted, PiiOccurrence.action != "keep",
                ).limit(1)
            )
            filename, content_type, digest = ver.filename, ver.content_type, ver.content_hash
            scanned = ver.status in ("indexed", "superseded")
        if redacted is not None and not principal.can_read_pii():
            raise PermissionDenied(
                "this original contains personal data that the index holds masked or tokenized; "
                "downloading it needs the pii:read permission"
            )
        if not scanned and not principal.can_read_pii() and (
            self._pii_redacts is None or self._pii_redacts(principal.tenant_id)
        ):
            raise PermissionDenied(
                "this version has not been scanned for personal data yet and the tenant's policy "
                "masks or tokenizes some; downloading it needs the pii:read permission"
            )
        try:
            data = self._blobs.get(principal.tenant_id, digest)
        except FileNotFoundError:
            raise NotFound(f"the stored original of document {doc_id!r} version {wanted} is gone") from None
        return data, filename, content_type or "application/octet-stream"

    def list(self, principal: Principal, limit: int = 50, offset: int = 0) -> DocumentsPublic:
        visible_ids = (
            select(DocumentAcl.doc_id)
            .where(DocumentAcl.tenant_id == principal.tenant_id, DocumentAcl.principal.in_(principal.acl_principals))
            .distinct()
        )
        base = select(Document).where(Document.tenant_id == principal.tenant_id, Document.doc_id.in_(visible_ids))
        with self._sessions() as s:
            count = s.scalar(select(func.count()).select_from(base.subquery())) or 0
            docs = s.scalars(base.order_by(Document.created_at.desc()).limit(limit).offset(offset)).all()
            wanted = {d.doc_id: d.current_version or d.latest_version for d in docs}
            shown = {
                v.doc_id: v
                for v in s.scalars(
                    select(DocumentVersion).where(
                        DocumentVersion.tenant_id == principal.tenant_id,
                        DocumentVersion.doc_id.in_(list(wanted)),
                    )
                )
                if v.version == wanted[v.doc_id]
            }
            data = [
                public_document(d, [shown[d.doc_id]] if d.doc_id in shown else [], with_versions=False) for d in docs
            ]
        return DocumentsPublic(data=data, count=count)

    def delete(self, principal: Principal, doc_id: str) -> None:
        if not principal.can_write():
            raise PermissionDenied("deleting needs the editor or admin role")
        with self._sessions() as s:
            self._visible_doc(s, principal, doc_id)
        self.remove(principal.tenant_id, doc_id)

    def remove(self, tenant_id: str, doc_id: str) -> Removed | None:
        """Delete a document with all its versions, chunks and unshared originals, without an
        ACL check (callers check: `delete` above, retention and erasure in governance)."""
        with self._sessions.begin() as s:
            doc = s.get(Document, (tenant_id, doc_id))
            if doc is None:
                return None
            versions = s.scalars(
                select(DocumentVersion).where(DocumentVersion.tenant_id == tenant_id, DocumentVersion.doc_id == doc_id)
            ).all()
            removed = Removed(doc_id, doc.title, len(versions), sum(v.chunk_count for v in versions
                                                                     if v.version == doc.current_version), 0)
            hashes = {v.content_hash for v in versions}
            s.execute(delete(DocumentVersion).where(
                DocumentVersion.tenant_id == tenant_id, DocumentVersion.doc_id == doc_id))
            s.execute(delete(DocumentAcl).where(DocumentAcl.tenant_id == tenant_id, DocumentAcl.doc_id == doc_id))
            s.delete(doc)
            handoff = None
            if self._index is None and self._unindex is not None:  # committed with the deletion itself
                handoff = Job(id=secrets.token_hex(12), tenant_id=tenant_id, kind="unindex", doc_id=doc_id,
                              version=doc.latest_version, state=JobState.queued.value)
                s.add(handoff)
        if handoff is not None and self._unindex is not None:
            self._unindex(handoff.id)
        else:
            self._require_index().delete_versions(tenant_id, doc_id)
        for digest in hashes:
            if not self._blob_in_use(tenant_id, digest):
                self._blobs.delete(tenant_id, digest)
                removed.blobs += 1
        return removed

    def apply_unindex(self, job_id: str) -> None:
        """Index owner: remove the chunks of a document a worker deleted. Idempotent; if the id
        was taken again meanwhile, the new document's live version is spared."""
        with self._sessions() as s:
            job = s.get(Job, job_id)
            if job is None or job.kind != "unindex" or job.state != JobState.queued.value:
                return
            tenant_id, doc_id, latest = job.tenant_id, job.doc_id or "", job.version or 0
            again = s.get(Document, (tenant_id, doc_id))
        index = self._require_index()
        if again is None:
            index.delete_versions(tenant_id, doc_id)
        else:
            for version in range(1, latest + 1):
                if version != again.current_version:
                    index.delete_versions(tenant_id, doc_id, only=version)
        with self._sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(
                state="succeeded", progress=1.0, updated_at=utcnow(), finished_at=utcnow()))

    def _blob_in_use(self, tenant_id: str, digest: str) -> bool:
        with self._sessions() as s:
            q = select(DocumentVersion.doc_id).where(
                DocumentVersion.tenant_id == tenant_id, DocumentVersion.content_hash == digest
            )
            return s.scalar(q.limit(1)) is not None


def _reason(job_id: str, exc: Exception) -> str:
    """A user-facing failure reason: Cairn errors carry one; anything else is logged in full
    and reported without internals."""
    if isinstance(exc, CairnError):
        return exc.message
    log.error("ingest job %s failed", job_id, exc_info=exc)
    return "internal error while processing the document; see the server log"


def _replace_acl_rows(s: Session, tenant_id: str, doc_id: str, acl: list[str]) -> None:
    s.execute(delete(DocumentAcl).where(DocumentAcl.tenant_id == tenant_id, DocumentAcl.doc_id == doc_id))
    s.add_all(DocumentAcl(tenant_id=tenant_id, doc_id=doc_id, principal=p) for p in acl)
