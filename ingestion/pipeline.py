"""parse -> chunk -> tag -> embed -> index points. Takes only core Protocols.

The pipeline turns one document version into index points; it does not decide whether those
points go live (that is a version decision made by the caller under its per-document lock).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from core.models import (
    EFFECTIVE_ALWAYS,
    EFFECTIVE_DATED,
    EFFECTIVE_FIELD,
    EFFECTIVE_MAX_TS,
    EFFECTIVE_MIN_TS,
    ChunkDraft,
    DocumentMetadata,
    IndexPoint,
    ParsedDocument,
    chunk_id,
)
from core.protocols import Chunker, DocumentParser, Embedder, SparseEncoder
from ingestion.pii import PiiRedactor


@dataclass(frozen=True)
class VersionRef:
    tenant_id: str
    doc_id: str
    version: int
    content_hash: str


@dataclass(frozen=True)
class PreparedVersion:
    parsed: ParsedDocument
    chunks: list[ChunkDraft]
    points: list[IndexPoint]


def _ts(value: datetime | None, default: float) -> float:
    return default if value is None else value.timestamp()


def chunk_payload(ref: VersionRef, meta: DocumentMetadata, acl: list[str], chunk: ChunkDraft) -> dict[str, Any]:
    """Everything a filter may need, copied onto each chunk so filters run inside the engine."""
    return {
        "tenant_id": ref.tenant_id,
        "doc_id": ref.doc_id,
        "version": ref.version,
        "chunk_index": chunk.index,
        "text": chunk.text,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
        "section_path": chunk.section_path,
        "page": chunk.page,
        "token_count": chunk.token_count,
        "title": meta.title or "",
        "source": meta.source,
        "external_id": meta.external_id,
        "tags": meta.tags,
        "policy_tags": meta.policy_tags,
        "language": meta.language or "",
        "team_id": meta.team_id or "",
        "acl": acl,
        "effective_from_ts": _ts(meta.effective_from, EFFECTIVE_MIN_TS),
        "effective_to_ts": _ts(meta.effective_to, EFFECTIVE_MAX_TS),
        EFFECTIVE_FIELD: (
            EFFECTIVE_ALWAYS if meta.effective_from is None and meta.effective_to is None else EFFECTIVE_DATED
        ),
        "content_hash": ref.content_hash,
    }


@dataclass(frozen=True)
class VersionInput:
    ref: VersionRef
    data: bytes
    filename: str
    content_type: str | None
    meta: DocumentMetadata
    acl: list[str]


@dataclass(frozen=True)
class Chunked:
    item: VersionInput
    parsed: ParsedDocument
    chunks: list[ChunkDraft]


class IngestionPipeline:
    """Parsing and chunking run per document (a bad document fails alone); embedding runs over
    the chunks of many documents at once, because one batched model call is far cheaper than
    many one-chunk calls (benchmarks/ingest.py measures the difference)."""

    def __init__(
        self,
        parser: DocumentParser,
        chunker: Chunker,
        embedder: Embedder,
        sparse: SparseEncoder,
        redactor: PiiRedactor | None = None,
    ) -> None:
        self._parser = parser
        self._redactor = redactor
        self._chunker = chunker
        self._embedder = embedder
        self._sparse = sparse
        # One model call at a time: torch already uses every core, so two concurrent calls only
        # thrash; meanwhile other workers parse and chunk the next batch.
        self._embed_lock = threading.Lock()

    def parse_and_chunk(self, item: VersionInput) -> Chunked:
        """The tenant's PII policy is applied to the parsed text and the title before chunking,
        so chunk text, offsets, titles, embeddings and sparse vectors only see redacted text."""
        parsed = self._parser.parse(item.data, item.filename, item.content_type)
        if self._redactor is None:
            return Chunked(item, parsed, self._chunker.chunk(parsed))
        ref = item.ref
        title = item.meta.title or ""
        redacted = self._redactor.redact(ref.tenant_id, ref.doc_id, ref.version, parsed, title)
        if redacted.title != title:
            item = replace(item, meta=item.meta.model_copy(update={"title": redacted.title}))
        return Chunked(item, redacted.document, self._chunker.chunk(redacted.document))

    def embed(self, batch: list[Chunked]) -> list[PreparedVersion]:
        texts = [c.text for doc in batch for c in doc.chunks]
        with self._embed_lock:
            vectors = iter(self._embedder.embed_documents(texts))
        out = []
        for doc in batch:
            ref, meta = doc.item.ref, doc.item.meta
            points = [
                IndexPoint(
                    id=chunk_id(ref.tenant_id, ref.doc_id, ref.version, c.index),
                    dense=next(vectors),
                    sparse=self._sparse.encode_document(_sparse_text(c)),
                    payload=chunk_payload(ref, meta, doc.item.acl, c),
                )
                for c in doc.chunks
            ]
            out.append(PreparedVersion(parsed=doc.parsed, chunks=doc.chunks, points=points))
        return out


def _sparse_text(chunk: ChunkDraft) -> str:
    """BM25 sees the section path too: a heading's words are strong evidence for its chunks."""
    if chunk.section_path:
        return " ".join(chunk.section_path) + "\n" + chunk.text
    return chunk.text
