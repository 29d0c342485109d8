"""The contracts between packages. Only the composition root in app/ picks implementations.

Component contract (after Haystack): constructors are cheap; heavy state (models, engine
handles) is loaded in `warm_up()`; methods return plain data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from core.models import (
    AccessScope,
    ChunkDraft,
    IndexFilter,
    IndexHit,
    IndexPoint,
    IndexQuery,
    ParsedDocument,
    SparseVector,
)


@runtime_checkable
class Embedder(Protocol):
    """Dense text embedder. Vectors are L2-normalised lists of floats."""

    @property
    def dim(self) -> int: ...

    @property
    def model_id(self) -> str: ...

    def warm_up(self) -> None: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens the way the embedding model does (chunk sizes are in these tokens)."""

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class SparseEncoder(Protocol):
    """Text -> sparse term-weight vector. Document vectors carry the BM25 term-frequency part;
    the engine applies IDF (Qdrant's IDF modifier), so query vectors are plain term presence."""

    def encode_document(self, text: str) -> SparseVector: ...

    def encode_query(self, text: str) -> SparseVector: ...


@runtime_checkable
class DocumentParser(Protocol):
    def parse(self, data: bytes, filename: str, content_type: str | None = None) -> ParsedDocument:
        """Raise core.errors.UnsupportedMediaType or ParseError; never return empty text silently
        (raise EmptyDocument instead)."""
        ...


@runtime_checkable
class Chunker(Protocol):
    def chunk(self, doc: ParsedDocument) -> list[ChunkDraft]: ...


@runtime_checkable
class VectorIndex(Protocol):
    """Dense + sparse named vectors with payload, one logical collection.

    Every read takes an AccessScope (tenant + ACL principals) that the adapter turns into a
    filter inside the engine query. There is no read without one.
    """

    def warm_up(self) -> None:
        """Open or create the collection, its vector config and payload indexes."""
        ...

    def upsert(self, points: Sequence[IndexPoint]) -> None: ...

    def delete_versions(
        self, tenant_id: str, doc_id: str, *, below: int | None = None, only: int | None = None
    ) -> None:
        """Remove a document's chunks: all of them, those of versions older than `below`, or
        those of version `only`."""
        ...

    def query(self, q: IndexQuery) -> list[IndexHit]: ...

    def query_batch(self, queries: Sequence[IndexQuery]) -> list[list[IndexHit]]:
        """Several queries in one engine call / round trip; one result list per query, in order."""
        ...

    def count(self, scope: AccessScope, filter: IndexFilter | None = None) -> int: ...

    def chunks_of(self, scope: AccessScope, doc_id: str, version: int | None = None) -> list[IndexHit]:
        """All chunks of one document visible to `scope`, ordered by chunk index."""
        ...

    def retrieve(self, scope: AccessScope, ids: Sequence[str], *, vectors: bool = False) -> list[IndexHit]:
        """Points by id with their payloads, in the order asked, only those visible to `scope`
        (filtered inside the engine); unknown or invisible ids are absent. `vectors` also
        returns each point's stored (unit-length) dense vector in `IndexHit.dense`."""
        ...

    def close(self) -> None: ...
