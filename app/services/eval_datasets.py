"""Evaluation datasets: a BEIR upload becomes its own collection of ordinary documents, or
labelled queries are attached to the tenant's existing corpus.

Why real documents: the collection is parsed, chunked, embedded and indexed by the production
pipeline, and every evaluation search goes through the same tenant + ACL filter as a user's
search, so an evaluation measures what users get and can never read past the uploader's access.
Collection documents carry `source = eval:<dataset id>` and the ids `eval-<dataset id>-<BEIR id>`.
"""

from __future__ import annotations

import io
import re
import secrets
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.services.documents import DocumentService, Upload, resolve_acl, visible
from core.errors import CairnError, InvalidInput, NotFound, PayloadTooLarge, PermissionDenied
from core.models import DocumentMetadata, Principal, SearchFilters, UtcDateTime
from core.tables import Document
from core.tables_evals import EvalDataset
from retrieval.evaluation.beir import BeirDataset, load_beir

T = TypeVar("T")

_QRELS = re.compile(r"(?:^|/)qrels/([^/]+)\.tsv$|^([^/]+)\.tsv$")
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


class AttachedDatasetCreate(BaseModel):
    """Labelled queries over documents already in the tenant (qrels name their document ids)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    queries: dict[str, str] = Field(min_length=1)
    qrels: dict[str, dict[str, int]] = Field(min_length=1)
    filters: SearchFilters | None = None
    acl: list[str] | None = None


class EvalDatasetPublic(BaseModel):
    id: str
    name: str
    kind: str
    source: str | None
    split: str
    acl: list[str]
    query_count: int
    doc_count: int
    documents: dict[str, int] = Field(default_factory=dict)  # collection: document status -> count
    created_by: str
    created_at: UtcDateTime


class EvalDatasetsPublic(BaseModel):
    data: list[EvalDatasetPublic]
    count: int


def doc_prefix(dataset_id: str) -> str:
    return f"eval-{dataset_id}-"


def extract_beir(files: dict[str, bytes], dest: Path, limit: int) -> None:
    """Lay uploaded files (loose, or one .zip / .tar.gz of the folder) out as a BEIR folder.

    Only corpus.jsonl, queries.jsonl and qrels/*.tsv are taken from an archive, by name, so
    archive paths never reach the file system; `limit` caps the uncompressed total.
    """
    members: dict[str, bytes] = {}
    for name, data in files.items():
        if name.lower().endswith(ARCHIVE_SUFFIXES):
            members.update(_archive_members(name, data, limit))
        else:
            members[name.replace("\\", "/").rsplit("/", 1)[-1]] = data
    placed = 0
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        base = name.rsplit("/", 1)[-1]
        if base in ("corpus.jsonl", "queries.jsonl"):
            (dest / base).write_bytes(data)
            placed += 1
        elif m := _QRELS.search(name):
            split = m.group(1) or m.group(2)
            if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", split):
                raise InvalidInput(f"qrels file name {name!r} is not a valid split name")
            (dest / "qrels" / f"{split}.tsv").write_bytes(data)
            placed += 1
    if placed == 0:
        raise InvalidInput("no BEIR files found: upload corpus.jsonl, queries.jsonl and qrels/<split>.tsv")


def _archive_members(name: str, data: bytes, limit: int) -> Iterator[tuple[str, bytes]]:
    total = 0

    def take(size: int) -> None:
        nonlocal total
        total += size
        if total > limit:
            raise PayloadTooLarge(f"the archive unpacks to more than the {limit} byte limit", limit=limit)

    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and _wanted(info.filename):
                        take(info.file_size)
                        yield info.filename, zf.read(info)
        else:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
                for member in tf.getmembers():
                    if member.isfile() and _wanted(member.name):
                        take(member.size)
                        fh = tf.extractfile(member)
                        yield member.name, fh.read() if fh else b""
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInput(f"{name!r} is not a readable .zip or .tar.gz archive") from exc


def _wanted(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return base in ("corpus.jsonl", "queries.jsonl") or bool(_QRELS.search(path))


def parse_upload(files: dict[str, bytes], split: str, limit: int) -> BeirDataset:
    with tempfile.TemporaryDirectory(prefix="cairn-beir-") as tmp:
        extract_beir(files, Path(tmp), limit)
        try:
            return load_beir(tmp, split)
        except CairnError as exc:  # the temp path means nothing to the client
            raise InvalidInput(exc.message.replace(str(tmp) + "/", "").replace(str(tmp), "the upload")) from None


class EvalDatasetService:
    def __init__(self, sessions: sessionmaker[Session], documents: DocumentService) -> None:
        self._sessions = sessions
        self._documents = documents

    def create_collection(
        self,
        principal: Principal,
        name: str,
        ds: BeirDataset,
        acl: list[str] | None = None,
        on_submitted: Callable[[int], None] | None = None,
    ) -> EvalDatasetPublic:
        """Store the labels, then submit every corpus document to the ingest pipeline."""
        if not principal.can_write():
            raise PermissionDenied("creating an evaluation dataset needs the editor or admin role")
        if not ds.corpus:
            raise InvalidInput("the corpus is empty")
        dataset_id = secrets.token_hex(8)
        source = f"eval:{dataset_id}"
        row = EvalDataset(
            id=dataset_id, tenant_id=principal.tenant_id, name=name, kind="collection", source=source,
            acl=resolve_acl(principal, acl), split=ds.split, queries=ds.queries, qrels=ds.qrels,
            filters={}, doc_count=0, created_by=principal.user,
        )
        with self._sessions.begin() as s:
            s.add(row)
        submitted = 0
        for doc in ds.corpus.values():
            body = f"{doc.title}\n\n{doc.text}".strip() if doc.title else doc.text.strip()
            if not body:
                continue  # an empty BEIR document can never be retrieved; it only counts against recall
            meta = DocumentMetadata(
                doc_id=doc_prefix(dataset_id) + doc.doc_id, title=doc.title or doc.doc_id, acl=row.acl,
                source=source, external_id=doc.doc_id, tags=["eval"],
            )
            upload = Upload(body.encode(), f"{doc.doc_id}.txt", "text/plain")
            self._documents.submit(principal, upload, meta)
            submitted += 1
            if on_submitted is not None:
                on_submitted(submitted)
        with self._sessions.begin() as s:
            stored = s.get(EvalDataset, dataset_id)
            assert stored is not None
            stored.doc_count = submitted
        return self.get(principal, dataset_id)

    def create_attached(self, principal: Principal, body: AttachedDatasetCreate) -> EvalDatasetPublic:
        missing = sorted(set(body.qrels) - set(body.queries))
        if missing:
            raise InvalidInput(f"qrels name queries that are not in 'queries' (first: {missing[0]!r})")
        dataset_id = secrets.token_hex(8)
        filters = body.filters.model_dump(mode="json", exclude_none=True) if body.filters else {}
        with self._sessions.begin() as s:
            s.add(EvalDataset(
                id=dataset_id, tenant_id=principal.tenant_id, name=body.name, kind="attached", source=None,
                acl=resolve_acl(principal, body.acl), split="custom",
                queries={q: body.queries[q] for q in body.qrels}, qrels=body.qrels, filters=filters,
                doc_count=len({d for rels in body.qrels.values() for d in rels}), created_by=principal.user,
            ))
        return self.get(principal, dataset_id)

    # ---- read -----------------------------------------------------------------------------

    def load(self, principal: Principal, dataset_id: str) -> EvalDataset:
        """The row, if this principal may see it; 404 otherwise (never 403: no existence leak)."""
        with self._sessions() as s:
            row = s.get(EvalDataset, dataset_id)
        if row is None or row.tenant_id != principal.tenant_id or not visible(principal, row.acl):
            raise NotFound(f"evaluation dataset {dataset_id!r} not found")
        return row

    def load_child(self, s: Session, principal: Principal, table: type[T], row_id: str, what: str) -> T:
        """A row that belongs to a dataset (an evaluation run, a tuning proposal): visible to
        whoever may see its dataset, in the principal's tenant; 404 otherwise."""
        row: Any = s.get(table, row_id)
        if row is None or row.tenant_id != principal.tenant_id:
            raise NotFound(f"{what} {row_id!r} not found")
        try:
            self.load(principal, row.dataset_id)
        except NotFound:
            raise NotFound(f"{what} {row_id!r} not found") from None
        return cast(T, row)

    def document_states(self, row: EvalDataset) -> dict[str, int]:
        if row.source is None:
            return {}
        with self._sessions() as s:
            rows = s.execute(
                select(Document.status, func.count())
                .where(Document.tenant_id == row.tenant_id, Document.source == row.source)
                .group_by(Document.status)
            ).all()
        return {status: int(n) for status, n in rows}

    def get(self, principal: Principal, dataset_id: str) -> EvalDatasetPublic:
        row = self.load(principal, dataset_id)
        return _public(row, self.document_states(row))

    def list(self, principal: Principal) -> EvalDatasetsPublic:
        with self._sessions() as s:
            rows = s.scalars(
                select(EvalDataset)
                .where(EvalDataset.tenant_id == principal.tenant_id)
                .order_by(EvalDataset.created_at.desc())
            ).all()
        data = [_public(r, self.document_states(r)) for r in rows if visible(principal, r.acl)]
        return EvalDatasetsPublic(data=data, count=len(data))

    def delete(self, principal: Principal, dataset_id: str) -> None:
        row = self.load(principal, dataset_id)
        if not principal.can_write():
            raise PermissionDenied("deleting an evaluation dataset needs the editor or admin role")
        if row.source is not None:
            with self._sessions() as s:
                doc_ids = s.scalars(
                    select(Document.doc_id).where(Document.tenant_id == row.tenant_id, Document.source == row.source)
                ).all()
            for doc_id in doc_ids:
                self._documents.delete(principal, doc_id)
        with self._sessions.begin() as s:
            stored = s.get(EvalDataset, dataset_id)
            if stored is not None:
                s.delete(stored)


def _public(row: EvalDataset, states: dict[str, int]) -> EvalDatasetPublic:
    return EvalDatasetPublic(
        id=row.id, name=row.name, kind=row.kind, source=row.source, split=row.split, acl=list(row.acl),
        query_count=len(row.qrels), doc_count=row.doc_count, documents=states, created_by=row.created_by,
        created_at=row.created_at,
    )
