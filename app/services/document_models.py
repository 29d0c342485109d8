"""What the documents API returns (ORM rows never leave the service)."""

from __future__ import annotations

from pydantic import BaseModel

from core.models import UtcDateTime
from core.tables import Document, DocumentVersion


class SubmitResult(BaseModel):
    document_id: str
    version: int
    job_id: str
    unchanged: bool = False


class VersionPublic(BaseModel):
    version: int
    status: str
    filename: str
    content_type: str
    size_bytes: int
    chunk_count: int
    error: str | None
    created_at: UtcDateTime


class DocumentPublic(BaseModel):
    document_id: str
    title: str
    source: str
    current_version: int
    latest_version: int
    status: str
    acl: list[str]
    tags: list[str]
    policy_tags: list[str]
    created_at: UtcDateTime
    updated_at: UtcDateTime
    versions: list[VersionPublic] = []
    # PII found in the shown version, by type (never values; GET /v1/documents/{id} only)
    pii_counts: dict[str, int] = {}


class DocumentsPublic(BaseModel):
    data: list[DocumentPublic]
    count: int


def public_document(doc: Document, versions: list[DocumentVersion], with_versions: bool = True) -> DocumentPublic:
    live = next((v for v in versions if v.version == doc.current_version), None)
    meta = (live or (versions[-1] if versions else None))
    m = meta.meta if meta is not None else {}
    return DocumentPublic(
        document_id=doc.doc_id, title=doc.title, source=doc.source, current_version=doc.current_version,
        latest_version=doc.latest_version, status=doc.status, acl=list(doc.acl),
        tags=list(m.get("tags", [])), policy_tags=list(m.get("policy_tags", [])),
        created_at=doc.created_at, updated_at=doc.updated_at,
        versions=[
            VersionPublic(
                version=v.version, status=v.status, filename=v.filename, content_type=v.content_type,
                size_bytes=v.size_bytes, chunk_count=v.chunk_count, error=v.error, created_at=v.created_at,
            )
            for v in (versions if with_versions else [])
        ],
    )
