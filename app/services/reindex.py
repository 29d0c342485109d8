"""Zero-downtime reindex: rebuild every live document into a NEW collection generation with the
current parser, chunker and embedder (after a chunking or model change), then swap the alias.

While it builds, the old generation keeps serving reads and writes untouched. Writes made during
the build are **replayed after**, not dual-written: SQL is the source of truth for which version
of which document is live, so catch-up passes compare it with what the new generation holds and
redo or delete the difference, until a pass finds nothing (at most `CATCH_UP_PASSES`). Then the
alias moves in one step. A go-live that wrote the old generation just before the swap may commit
its SQL row just after it, so once the ingest jobs that were embedding at the swap have finished
(or `go_live_grace_s` has passed), passes repeat until one finds nothing. Replay works the same
whoever writes (this process, a Celery worker on a Qdrant server), which dual-writing from one
process could not promise. After the swap nothing undoes it: a shutdown is ignored and a document
that fails then is named on the run (`error`), which still finishes `swapped`.

A run is claimed with its `started_at`; a worker that finds its claim taken over (the run went
stale and another worker claimed it) stops without swapping and drops only what it built.

A document that fails to rebuild keeps the swap from happening (its chunks would vanish); the new
generation is dropped and the job fails with the documents named. After a swap the replaced
generation is kept, open, for `rollback()` until `cleanup()` drops it; a later reindex drops the
one kept from before.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import requeue_active, set_job
from app.services._index_generations import Generations
from app.services.blobs import BlobStore
from core.errors import CairnError, Conflict, NotFound
from core.models import AccessScope, DocumentMetadata, IndexFilter, JobState, MatchAny, Principal, UtcDateTime
from core.protocols import VectorIndex
from core.tables import Document, DocumentVersion, Job, utcnow
from core.tables_reindex import IndexAlias, ReindexRun
from ingestion.pipeline import Chunked, IngestionPipeline, VersionInput, VersionRef

log = logging.getLogger(__name__)
CATCH_UP_PASSES = 3
_SETTLE_PASSES = 10  # after the swap: new writes reach the new generation, so passes converge fast
_SETTLE_POLL_S = 0.1
_ACTIVE = ("queued", "running")
Key = tuple[str, str]  # (tenant_id, doc_id)


class ReindexRunPublic(BaseModel):
    id: str
    status: str  # queued | running | swapped | failed
    source: str | None
    target: str | None
    total_docs: int
    done_docs: int
    failed_docs: int
    chunks: int
    error: str | None
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class ReindexStatus(BaseModel):
    alias: str
    serving: str
    previous: str | None  # kept for rollback until cleanup
    runs: list[ReindexRunPublic]


class _Stopped(Exception):
    """Shutdown mid-build: the run goes back to `queued` and starts over at the next start."""


class _Superseded(Exception):
    """Another worker claimed this run after it went stale: it is theirs now; touch nothing of it."""


@dataclass
class _Build:
    run_id: str
    claimed_at: datetime  # the run's started_at when we claimed it: it is ours while unchanged
    source: str
    target: str
    index: VectorIndex
    swapped: bool = False
    written: dict[Key, int] = field(default_factory=dict)  # what the new generation holds
    counts: dict[tuple[str, str, int], int] = field(default_factory=dict)
    failed: dict[Key, str] = field(default_factory=dict)


def serving_generation(sessions: sessionmaker[Session], alias: str) -> str | None:
    """The generation the alias row names (None before the first swap)."""
    with sessions() as s:
        row = s.get(IndexAlias, alias)
        return row.target if row is not None else None


class ReindexService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        pipeline: IngestionPipeline,
        generations: Generations,
        serving_index: VectorIndex,
        enqueue: Callable[[str], None],
        *,
        batch_docs: int = 32,
        stale_after_s: float = 900.0,
        go_live_grace_s: float = 300.0,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._pipeline = pipeline
        self._gens = generations
        self._serving = serving_index  # follows the alias: used to recount chunks after a rollback
        self._enqueue = enqueue
        self._batch = batch_docs
        self._stale = timedelta(seconds=stale_after_s)
        self._grace_s = go_live_grace_s
        self._stop = threading.Event()
        self._swap_lock = threading.Lock()

    # ---- API --------------------------------------------------------------------------------

    def start(self, principal: Principal) -> ReindexRunPublic:
        """Queue a rebuild; one at a time (asking again while one is active is a 409)."""
        run_id = secrets.token_hex(12)
        with self._sessions.begin() as s:
            active = s.scalars(select(ReindexRun).where(ReindexRun.status.in_(_ACTIVE))).first()
            if active is not None:
                raise Conflict(f"reindex {active.id} is already {active.status}; wait for it to finish",
                               job_id=active.id)
            s.add(ReindexRun(id=run_id, alias=self._gens.alias, status="queued", created_by=principal.user))
            s.add(Job(id=run_id, tenant_id=principal.tenant_id, kind="reindex", state="queued",
                      created_by=principal.user))
        self._dispatch(run_id)
        return self.get(run_id)

    def get(self, run_id: str) -> ReindexRunPublic:
        with self._sessions() as s:
            run = s.get(ReindexRun, run_id)
            if run is None:
                raise NotFound(f"reindex run {run_id!r} not found")
            return _public(run)

    def status(self, limit: int = 10) -> ReindexStatus:
        with self._sessions() as s:
            row = s.get(IndexAlias, self._gens.alias)
            runs = s.scalars(select(ReindexRun).order_by(ReindexRun.created_at.desc()).limit(limit)).all()
            return ReindexStatus(alias=self._gens.alias, serving=self._gens.serving(),
                                 previous=row.previous if row else None, runs=[_public(r) for r in runs])

    def rollback(self) -> ReindexStatus:
        """Serve the kept generation again (the one replaced becomes the kept one, so a second
        rollback rolls forward). Chunk counts shown on documents are recounted from it."""
        with self._swap_lock:
            with self._sessions() as s:
                if s.scalars(select(ReindexRun.id).where(ReindexRun.status.in_(_ACTIVE))).first():
                    raise Conflict("a reindex is running; roll back after it has finished")
                row = s.get(IndexAlias, self._gens.alias)
                previous = row.previous if row else None
            if not previous:
                raise Conflict("no previous generation is kept, so there is nothing to roll back to")
            current = self._gens.serving()
            self._gens.open(previous)
            self._gens.swap(previous)
            self._save_alias(previous, current)
        log.info("index alias %s rolled back from %s to %s", self._gens.alias, current, previous)
        self._recount()
        return self.status()

    def cleanup(self) -> ReindexStatus:
        """Drop the generation kept for rollback."""
        with self._swap_lock:
            with self._sessions() as s:
                row = s.get(IndexAlias, self._gens.alias)
                previous = row.previous if row else None
            if previous:
                self._gens.drop(previous)
                self._save_alias(self._gens.serving(), None)
        return self.status()

    def requeue(self, run_id: str) -> None:
        """`POST /v1/jobs/{id}/retry` for a failed reindex."""
        with self._sessions.begin() as s:
            run = s.get(ReindexRun, run_id)
            if run is None or run.status != "failed":
                raise Conflict("only a failed reindex can be retried")
            if s.scalars(select(ReindexRun.id).where(ReindexRun.status.in_(_ACTIVE))).first():
                raise Conflict("another reindex is active; wait for it to finish")
            run.status, run.error, run.finished_at = "queued", None, None
            set_job(s, run_id, "queued", 0.0)
            job = s.get(Job, run_id)
            if job is not None:
                job.error, job.finished_at = None, None
        self._dispatch(run_id)

    def recover(self) -> int:
        """In-process mode: a run a previous process left active starts over."""
        return requeue_active(self._sessions, ReindexRun, self._dispatch, _ACTIVE)

    def stop(self) -> None:
        self._stop.set()

    def _dispatch(self, run_id: str) -> None:
        try:
            self._enqueue(run_id)
        except Exception:
            log.warning("could not enqueue reindex %s now; the recovery sweep will", run_id, exc_info=True)

    # ---- the work ---------------------------------------------------------------------------

    def run_jobs(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            self.run(run_id)

    def run(self, run_id: str) -> None:
        claim = self._claim(run_id)
        if claim is None:
            return  # idempotent: finished, or running elsewhere and not stale
        claimed_at, abandoned = claim
        build: _Build | None = None
        try:
            build = self._prepare(run_id, claimed_at, abandoned)
            self._build(build)
        except _Superseded:
            log.warning("reindex %s was taken over by another worker; this one stops without swapping", run_id)
            self._drop_unswapped(build)
        except _Stopped:
            self._drop_unswapped(build)
            self._end_unswapped(run_id, claimed_at, "queued", None)
        except CairnError as exc:
            self._drop_unswapped(build)
            self._end_unswapped(run_id, claimed_at, "failed", exc.message)
        except Exception:
            log.exception("reindex %s crashed", run_id)
            self._drop_unswapped(build)
            self._end_unswapped(run_id, claimed_at, "failed", "internal error while reindexing; see the server log")

    def _claim(self, run_id: str) -> tuple[datetime, str | None] | None:
        """Take the run (queued, or running but silent for `stale_after_s`); returns the claim's
        `started_at`, which identifies it from then on, and the generation an earlier claim of
        this run began (to be dropped)."""
        stale = utcnow() - self._stale
        with self._sessions.begin() as s:
            run = s.get(ReindexRun, run_id, with_for_update=True)
            job = s.get(Job, run_id)
            if run is None or run.status not in _ACTIVE:
                return None
            if run.status == "running" and job is not None and _aware(job.updated_at) > stale:
                return None
            abandoned = run.target
            claimed_at = utcnow()
            run.status, run.started_at, run.error = "running", claimed_at, None
            run.done_docs = run.failed_docs = run.chunks = 0
            set_job(s, run_id, "running", 0.0)
        return claimed_at, abandoned

    def _prepare(self, run_id: str, claimed_at: datetime, abandoned: str | None) -> _Build:
        source = self._gens.serving()
        target = self._gens.next_name(source)  # while `abandoned` exists, so its name is never reused
        index = self._gens.create(target)
        b = _Build(run_id, claimed_at, source, target, index)
        try:
            with self._sessions.begin() as s:
                self._own(s, b)
                s.execute(update(ReindexRun).where(ReindexRun.id == run_id).values(source=source, target=target))
        except _Superseded:
            self._drop_quietly(target)
            raise
        if abandoned and abandoned != target:  # an earlier claim was killed (or went silent) mid-build
            self._drop_quietly(abandoned)
        log.info("reindex %s: building %s beside %s", run_id, target, source)
        return b

    def _own(self, s: Session, b: _Build) -> ReindexRun:
        """Lock the run row and check the claim is still ours (else `_Superseded`)."""
        run = s.get(ReindexRun, b.run_id, with_for_update=True)
        if run is None or run.status != "running" or run.started_at is None \
                or _aware(run.started_at) != _aware(b.claimed_at):
            raise _Superseded
        return run

    def _build(self, b: _Build) -> None:
        live = self._live()
        todo = list(live.items())
        self._progress(b, 0, len(todo))
        for start in range(0, len(todo), self._batch):
            self._index_batch(b, todo[start : start + self._batch])
            self._progress(b, min(start + self._batch, len(todo)), len(todo))
        for _ in range(CATCH_UP_PASSES):
            if not self._catch_up(b):
                break
        if b.failed:
            names = _names(b)
            raise CairnError(f"{len(b.failed)} documents could not be rebuilt, so the alias was not swapped "
                             f"(the current index keeps serving): {names}")
        source, target = b.source, b.target  # what this claim built, never what the row says now
        with self._swap_lock, self._sessions.begin() as s:
            self._own(s, b)  # the row stays locked until the alias row is written
            self._gens.swap(target)
            b.swapped = True
            older = self._save_alias(target, source, s)
        embedding = self._embedding_jobs()  # go-lives in flight: they may have written the old generation
        log.info("reindex %s: alias %s now serves %s (kept %s for rollback)", b.run_id, self._gens.alias,
                 target, source)
        note: str | None = None
        try:  # from here on the swap stands: nothing below may undo or fail it
            self._settle(b, embedding)
            if older and older not in (source, target):
                self._drop_quietly(older)
            self._apply_counts(b)
        except Exception:
            log.exception("reindex %s: catch-up after the swap failed", b.run_id)
            note = "the catch-up after the swap failed; see the server log (reindex again to repair)"
        if b.failed:
            note = (f"swapped, but {len(b.failed)} documents written during the swap could not be rebuilt and "
                    f"are missing from {target} (reindex again, or roll back): {_names(b)}")
        self._finish_swapped(b, note)

    def _settle(self, b: _Build, embedding: list[str]) -> None:
        """After the swap: wait out go-lives that may have written the old generation just before
        it, then replay until a pass finds nothing."""
        deadline = time.monotonic() + self._grace_s
        while embedding and time.monotonic() < deadline:
            with self._sessions() as s:
                embedding = list(s.scalars(select(Job.id).where(
                    Job.id.in_(embedding), Job.state == JobState.embedding.value)))
            if embedding:
                self._touch(b)
                time.sleep(_SETTLE_POLL_S)
        for _ in range(_SETTLE_PASSES):
            if not self._catch_up(b):
                return
        log.warning("reindex %s: writes kept arriving after the swap; stopped catching up after %d passes",
                    b.run_id, _SETTLE_PASSES)

    def _embedding_jobs(self) -> list[str]:
        with self._sessions() as s:
            return list(s.scalars(select(Job.id).where(Job.kind == "ingest", Job.state == JobState.embedding.value)))

    def _finish_swapped(self, b: _Build, note: str | None) -> None:
        with self._sessions.begin() as s:
            run = s.get(ReindexRun, b.run_id, with_for_update=True)
            if run is None or run.started_at is None or _aware(run.started_at) != _aware(b.claimed_at):
                return  # taken over after the swap; the new claim records its own outcome
            run.status, run.finished_at, run.failed_docs, run.error = "swapped", utcnow(), len(b.failed), note
            run.chunks = sum(b.counts[(t, d, v)] for (t, d), v in b.written.items() if (t, d, v) in b.counts)
            set_job(s, b.run_id, "succeeded", 1.0, finished=True)

    def _live(self) -> dict[Key, int]:
        with self._sessions() as s:
            rows = s.execute(select(Document.tenant_id, Document.doc_id, Document.current_version)
                             .where(Document.current_version > 0)).all()
        return {(t, d): v for t, d, v in rows}

    def _catch_up(self, b: _Build) -> int:
        """Make the new generation match SQL: redo documents whose live version differs from
        what it holds (changed, added, or failed before), delete what SQL no longer has."""
        live = self._live()
        gone = [k for k in b.written if k not in live]
        for tenant_id, doc_id in gone:
            b.index.delete_versions(tenant_id, doc_id)
            del b.written[(tenant_id, doc_id)]
        for k in [k for k in b.failed if k not in live]:
            del b.failed[k]
        todo = [(k, v) for k, v in live.items() if b.written.get(k) != v]
        if b.swapped:  # a document that failed after the swap is named on the run, not retried forever
            todo = [(k, v) for k, v in todo if k not in b.failed]
        for start in range(0, len(todo), self._batch):
            self._index_batch(b, todo[start : start + self._batch])
            self._touch(b)  # a long catch-up must not look stale to the recovery sweep
        if gone or todo:
            log.info("reindex %s catch-up: %d redone, %d deleted", b.run_id, len(todo), len(gone))
        return len(gone) + len(todo)

    def _index_batch(self, b: _Build, items: list[tuple[Key, int]]) -> None:
        if self._stop.is_set() and not b.swapped:  # after the swap, finishing beats stopping
            raise _Stopped
        chunked: list[Chunked] = []
        for (tenant_id, doc_id), version in items:
            try:
                item = self._input(tenant_id, doc_id, version)
            except CairnError as exc:
                if not b.swapped:
                    raise
                b.failed[(tenant_id, doc_id)] = exc.message
                continue
            if item is None:
                continue  # deleted meanwhile: the next catch-up pass sees it gone
            try:
                chunked.append(self._pipeline.parse_and_chunk(item))
            except CairnError as exc:
                b.failed[(tenant_id, doc_id)] = exc.message
            except Exception:
                log.exception("reindex: %s could not be parsed", doc_id)
                b.failed[(tenant_id, doc_id)] = "internal error while parsing; see the server log"
        if not chunked:
            return
        prepared = self._pipeline.embed(chunked)
        b.index.upsert([p for ready in prepared for p in ready.points])
        now = self._live_versions([(c.item.ref.tenant_id, c.item.ref.doc_id) for c in chunked])
        for c, ready in zip(chunked, prepared, strict=True):
            ref = c.item.ref
            key = (ref.tenant_id, ref.doc_id)
            if now.get(key) == ref.version:
                b.written[key] = ref.version
                b.counts[(ref.tenant_id, ref.doc_id, ref.version)] = len(ready.points)
                b.failed.pop(key, None)
            else:  # superseded or deleted while we embedded it: catch-up redoes it
                b.index.delete_versions(ref.tenant_id, ref.doc_id, only=ref.version)
                b.written.pop(key, None)

    def _live_versions(self, keys: list[Key]) -> dict[Key, int]:
        with self._sessions() as s:
            docs = [s.get(Document, k) for k in keys]
            return {(d.tenant_id, d.doc_id): d.current_version for d in docs if d is not None}

    def _input(self, tenant_id: str, doc_id: str, version: int) -> VersionInput | None:
        with self._sessions() as s:
            ver = s.get(DocumentVersion, (tenant_id, doc_id, version))
        if ver is None:
            return None
        meta = DocumentMetadata.model_validate(ver.meta)
        try:
            data = self._blobs.get(tenant_id, ver.content_hash)
        except OSError as exc:
            raise CairnError(f"the stored original of document {doc_id!r} is missing; restore the blobs "
                             "directory before reindexing") from exc
        ref = VersionRef(tenant_id, doc_id, version, ver.content_hash)
        return VersionInput(ref, data, ver.filename, ver.content_type or None, meta, meta.acl or [])

    # ---- bookkeeping ------------------------------------------------------------------------

    def _save_alias(self, target: str, previous: str | None, s: Session | None = None) -> str | None:
        """Record the swap; returns the generation that was kept before (to be dropped)."""
        if s is None:
            with self._sessions.begin() as own:
                return self._save_alias(target, previous, own)
        row = s.get(IndexAlias, self._gens.alias, with_for_update=True)
        if row is None:
            row = IndexAlias(name=self._gens.alias, target=target)
            s.add(row)
        older = row.previous
        row.target, row.previous, row.updated_at = target, previous, utcnow()
        return older

    def _apply_counts(self, b: _Build) -> None:
        with self._sessions.begin() as s:
            for (t, d, v), n in b.counts.items():
                if b.written.get((t, d)) == v:
                    s.execute(update(DocumentVersion).where(
                        DocumentVersion.tenant_id == t, DocumentVersion.doc_id == d, DocumentVersion.version == v,
                    ).values(chunk_count=n))

    def _recount(self) -> None:
        """Chunk counts of live versions from the generation now serving (after a rollback)."""
        with self._sessions() as s:
            docs = s.execute(select(Document.tenant_id, Document.doc_id, Document.current_version, Document.acl)
                             .where(Document.current_version > 0)).all()
        counts = {}
        for t, d, v, acl in docs:
            if acl:
                flt = IndexFilter(must=(MatchAny("doc_id", (d,)), MatchAny("version", (v,))))
                counts[(t, d, v)] = self._serving.count(AccessScope(t, tuple(acl)), flt)
        with self._sessions.begin() as s:
            for (t, d, v), n in counts.items():
                s.execute(update(DocumentVersion).where(
                    DocumentVersion.tenant_id == t, DocumentVersion.doc_id == d, DocumentVersion.version == v,
                ).values(chunk_count=n))

    def _progress(self, b: _Build, done: int, total: int) -> None:
        with self._sessions.begin() as s:
            run = self._own(s, b)
            run.total_docs, run.done_docs, run.failed_docs = total, done, len(b.failed)
            set_job(s, b.run_id, "running", round(0.95 * done / total, 4) if total else 0.0)

    def _touch(self, b: _Build) -> None:
        """Show the run is alive (Job.updated_at) and, before the swap, that it is still ours."""
        with self._sessions.begin() as s:
            if not b.swapped:
                self._own(s, b)
            s.execute(update(Job).where(Job.id == b.run_id).values(updated_at=utcnow()))

    def _end_unswapped(self, run_id: str, claimed_at: datetime, status: str, reason: str | None) -> None:
        """Queue again (shutdown) or fail the run, unless another worker has claimed it since."""
        with self._sessions.begin() as s:
            run = s.get(ReindexRun, run_id, with_for_update=True)
            if run is None or (run.started_at is not None and _aware(run.started_at) != _aware(claimed_at)):
                return
            if status == "queued":
                run.status = "queued"
                set_job(s, run_id, "queued", 0.0)
            else:
                run.status, run.error, run.finished_at = "failed", reason, utcnow()
                set_job(s, run_id, "failed", 0.0, error=reason, finished=True)

    def _fail(self, run_id: str, reason: str) -> None:
        with self._sessions.begin() as s:
            s.execute(update(ReindexRun).where(ReindexRun.id == run_id).values(
                status="failed", error=reason, finished_at=utcnow()))
            set_job(s, run_id, "failed", 0.0, error=reason, finished=True)

    def fail_jobs(self, run_ids: list[str], reason: str) -> None:
        """A worker's retries ran out."""
        for run_id in run_ids:
            self._fail(run_id, reason)

    def _drop_unswapped(self, b: _Build | None) -> None:
        """Drop the generation this claim built (never the one the row names now: after a
        takeover that is another worker's)."""
        if b is None or b.swapped:
            return
        with self._sessions() as s:
            run = s.get(ReindexRun, b.run_id)
            theirs = run is not None and run.target == b.target and run.started_at is not None \
                and _aware(run.started_at) != _aware(b.claimed_at)
        if not theirs:
            self._drop_quietly(b.target)

    def _drop_quietly(self, name: str) -> None:
        """Drop a generation unless it serves or is kept for rollback."""
        try:
            with self._sessions() as s:
                row = s.get(IndexAlias, self._gens.alias)
                kept = {row.target, row.previous} if row else set()
            if name in kept or name == self._gens.serving():
                return
            self._gens.drop(name)
        except CairnError:
            log.warning("could not drop the index generation %s", name, exc_info=True)


def _names(b: _Build) -> str:
    return ", ".join(f"{d}: {why}" for (_t, d), why in list(b.failed.items())[:5])


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _public(run: ReindexRun) -> ReindexRunPublic:
    return ReindexRunPublic(
        id=run.id, status=run.status, source=run.source, target=run.target, total_docs=run.total_docs,
        done_docs=run.done_docs, failed_docs=run.failed_docs, chunks=run.chunks, error=run.error,
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
    )
