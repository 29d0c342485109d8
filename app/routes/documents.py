from __future__ import annotations

import json
import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.deps import ContainerDep, PrincipalDep, audited
from app.services.audit import AuditNote
from app.services.document_models import DocumentPublic, DocumentsPublic, SubmitResult
from app.services.documents import Upload
from app.services.governance import note_erasure
from core.errors import InvalidInput, MissingMetadata, PayloadTooLarge
from core.models import DocumentMetadata

router = APIRouter(prefix="/v1/documents", tags=["documents"])
_READ_CHUNK = 1024 * 1024
MAX_FILENAME = 255
_UNSAFE_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def parse_metadata(raw: str | None) -> DocumentMetadata:
    if raw is None or not raw.strip():
        raise MissingMetadata("the 'metadata' form field is required: a JSON object (title, acl, tags, ...)")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"'metadata' is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise InvalidInput("'metadata' must be a JSON object")
    try:
        return DocumentMetadata.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) + f": {err['msg']}" for err in exc.errors())
        raise InvalidInput(f"'metadata' is not valid: {fields}") from None


def safe_filename(raw: str | None) -> str:
    """The uploaded file's own name: no directories, no control or bidi-override characters, at
    most 255 characters with the extension kept (it helps decide the format). The name is only
    ever shown and stored (blobs are stored by digest), but it reaches UIs, logs and exports."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_IN_NAME.sub("", name).strip().lstrip(".")
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 16 else ""
        name = stem[: MAX_FILENAME - len(ext) - 1].rstrip() + ("." + ext if ext else "")
    return name or "upload"


async def read_limited(file: UploadFile, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await file.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the file is larger than the {limit} byte limit", limit=limit)
        parts.append(chunk)
    return b"".join(parts)


@router.post("", status_code=202, response_model=SubmitResult)
async def upload_document(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    container: ContainerDep,
    audit: Annotated[AuditNote, audited("document.upload")],
    file: Annotated[UploadFile | None, File(description="the document")] = None,
    metadata: Annotated[str | None, Form(description="JSON object: title, acl, tags, ...")] = None,
) -> SubmitResult:
    """Upload a document (new, or a new version of `metadata.doc_id`). Parsing, chunking and
    indexing run as a job: poll `GET /v1/jobs/{job_id}`."""
    limit = container.settings.ingestion.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(f"the upload is larger than the {limit} byte limit", limit=limit)
    if file is None:
        raise InvalidInput("the 'file' form field is required", field="file")
    meta = parse_metadata(metadata)
    data = await read_limited(file, limit)
    upload = Upload(data=data, filename=safe_filename(file.filename), content_type=file.content_type)
    result = await run_in_threadpool(container.documents.submit, principal, upload, meta)
    audit.target(document_id=result.document_id, version=result.version, job_id=result.job_id)
    if result.unchanged:
        response.status_code = 200
    return result


@router.get("", response_model=DocumentsPublic)
def list_documents(
    principal: PrincipalDep,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> DocumentsPublic:
    return container.documents.list(principal, limit=limit, offset=offset)


@router.get("/{document_id}", response_model=DocumentPublic)
def get_document(document_id: str, principal: PrincipalDep, container: ContainerDep) -> DocumentPublic:
    return container.documents.get(principal, document_id)


@router.get(
    "/{document_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the stored original"}},
)
def download_document(
    document_id: str, audit: Annotated[AuditNote, audited("document.download")], principal: PrincipalDep,
    container: ContainerDep, version: Annotated[int | None, Query(ge=1, le=1_000_000_000)] = None,
) -> Response:
    """The original file as uploaded (the current version unless `version` is given), for callers
    who may see the document; 404 otherwise, exactly as for a document that does not exist."""
    data, filename, content_type = container.documents.original(principal, document_id, version)
    audit.target(document_id=document_id, version=version)
    return Response(
        content=data,
        media_type=content_type,
        headers={
            # always a download, never rendered on the API's origin (an uploaded HTML file is data)
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


@router.delete("/{document_id}", status_code=204)
def delete_document(
    document_id: str, audit: Annotated[AuditNote, audited("document.delete")], principal: PrincipalDep,
    container: ContainerDep,
    erase: Annotated[bool, Query(description="also erase its PII vault entries and redact runs citing it")] = False,
) -> Response:
    if erase:  # audited as an erasure (what it removed), not as a plain delete
        audit.action = "erasure"
        note_erasure(audit, container.governance.erase_document(principal, document_id))
    else:
        container.documents.delete(principal, document_id)
    return Response(status_code=204)
