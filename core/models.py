"""Domain models shared by every package. Plain pydantic / dataclasses, no vendor types."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

CHUNK_NAMESPACE = uuid.UUID("6f1c4c1e-9b7a-4e59-9a55-3c2b0d1f7a10")

# Payload bounds used when a document has no effective_from / effective_to, so every
# effective-date filter is a plain numeric range inside the engine (no null handling).
EFFECTIVE_MIN_TS = 0.0
EFFECTIVE_MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z
# Keyword payload saying whether a document has effective dates at all: "always" (neither date
# set: in force at every moment) or "dated". The effective-date filter lets an "always" point
# through on this one keyword check; the two range checks are only needed for the others. Over
# 100k chunks the ranges cost the engine 8 ms of a 40 ms filtered dense scan, the keyword ~1 ms.
# Points written before this field existed have neither value and take the range branch.
EFFECTIVE_FIELD = "effective"
EFFECTIVE_ALWAYS = "always"
EFFECTIVE_DATED = "dated"


def _as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything Cairn stores is UTC, so say so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]


def chunk_id(tenant_id: str, doc_id: str, version: int, index: int) -> str:
    """Deterministic, so re-ingesting the same version overwrites instead of duplicating."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{tenant_id}\x1f{doc_id}\x1f{version}\x1f{index}"))


class Role(StrEnum):
    admin = "admin"
    editor = "editor"
    reader = "reader"


# `pii:read`: answers show the original values behind PII tokens (see docs/security.md)
Permission = Literal["pii:read"]
PII_READ: Permission = "pii:read"


class Principal(BaseModel):
    """Who is calling. Built only from a verified API key, never from a request body."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    user: str
    groups: tuple[str, ...] = ()
    role: Role = Role.reader
    key_id: str = ""
    permissions: tuple[str, ...] = ()  # optional extras granted on the API key (see Permission)

    @property
    def acl_principals(self) -> list[str]:
        """The ACL strings this principal matches: its user, its groups, and the tenant-wide
        marker that documents shared with everyone in the tenant carry."""
        return [f"user:{self.user}", *(f"group:{g}" for g in self.groups), "tenant:*"]

    def can_write(self) -> bool:
        return self.role in (Role.admin, Role.editor)

    def can_read_pii(self) -> bool:
        return PII_READ in self.permissions


class DocumentMetadata(BaseModel):
    """What an uploader says about a document (the `metadata` form field)."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str | None = Field(default=None, min_length=1, max_length=256)
    title: str | None = Field(default=None, max_length=1024)
    tags: list[str] = Field(default_factory=list)
    acl: list[str] | None = None
    team_id: str | None = None
    language: str | None = None
    policy_tags: list[str] = Field(default_factory=list)
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    source: str = "upload"
    external_id: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ParsedElement(BaseModel):
    """One structural element of a parsed document, located in `ParsedDocument.text`."""

    text: str
    category: str
    char_start: int
    char_end: int
    page: int | None = None
    section_path: list[str] = Field(default_factory=list)


class ParsedDocument(BaseModel):
    text: str
    elements: list[ParsedElement]
    has_pages: bool = False
    detected_type: str = ""


class ChunkDraft(BaseModel):
    """A chunk before it has an id: offsets index into ParsedDocument.text."""

    index: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    section_path: list[str] = Field(default_factory=list)
    page: int | None = None


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class IndexPoint:
    id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any]


# ---- engine-neutral filters -------------------------------------------------------------


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: tuple[str | int, ...]


@dataclass(frozen=True)
class Range:
    key: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class AnyOf:
    """At least one of `options` holds, each option an AND of conditions (a nested `should`)."""

    options: tuple[tuple[MatchAny | Range, ...], ...]


Condition = MatchAny | Range | AnyOf


@dataclass(frozen=True)
class IndexFilter:
    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class AccessScope:
    """Tenant + ACL principals that every engine read is restricted to.

    It is a required argument of every `VectorIndex` read, so a caller cannot forget it, and
    it refuses to exist without a tenant and at least one principal: a missing principal
    can never turn into "no filter".
    """

    tenant_id: str
    principals: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ValueError("AccessScope needs a tenant_id")
        if not self.principals or any(not p for p in self.principals):
            raise ValueError("AccessScope needs at least one non-empty ACL principal")

    @classmethod
    def of(cls, principal: Principal) -> AccessScope:
        return cls(principal.tenant_id, tuple(principal.acl_principals))


@dataclass(frozen=True)
class IndexQuery:
    scope: AccessScope
    filter: IndexFilter = field(default_factory=IndexFilter)
    dense: list[float] | None = None
    sparse: SparseVector | None = None
    limit: int = 10
    prefetch_limit: int = 50
    fusion: Literal["rrf", "dbsf"] = "rrf"
    rrf_k: int = 60
    weights: tuple[float, float] | None = None  # (dense, sparse) for weighted fusion
    with_payload: bool = True


@dataclass(frozen=True)
class IndexHit:
    id: str
    score: float
    payload: dict[str, Any]
    dense: list[float] | None = None  # the stored dense vector, when the read asked for it


# ---- jobs ---------------------------------------------------------------------------------


class JobState(StrEnum):
    queued = "queued"
    parsing = "parsing"
    chunking = "chunking"
    embedding = "embedding"
    indexed = "indexed"
    failed = "failed"


JOB_PROGRESS = {
    JobState.queued: 0.0,
    JobState.parsing: 0.1,
    JobState.chunking: 0.3,
    JobState.embedding: 0.5,
    JobState.indexed: 1.0,
}


# ---- search -------------------------------------------------------------------------------


class SearchFilters(BaseModel):
    """User filters. They narrow what the caller's ACL already allows; they never widen it."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] | None = None
    source: list[str] | None = None
    language: list[str] | None = None
    doc_ids: list[str] | None = None
    team_id: list[str] | None = None
    policy_tags: list[str] | None = None
    exclude_policy_tags: list[str] | None = None
    # documents outside [effective_from, effective_to) are invisible unless as_of says otherwise
    as_of: datetime | None = None


class RetrievedChunk(BaseModel):
    """A chunk as the query path hands it on: enough to cite it and to show it."""

    doc_id: str
    chunk_id: str
    version: int
    chunk_index: int
    text: str
    title: str = ""
    source: str = ""
    char_start: int
    char_end: int
    page: int | None = None
    section_path: list[str] = Field(default_factory=list)
    score: float = 0.0
    policy_tags: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    gatherer: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)  # per-stage scores for `explain`


# Payload every index point carries (all filters run inside the engine on these):
#   tenant_id, doc_id, version, chunk_index, text, char_start, char_end, section_path, page,
#   token_count, title, source, external_id, tags, policy_tags, language, team_id, acl,
#   effective_from_ts, effective_to_ts, effective, content_hash
KEYWORD_PAYLOAD_FIELDS = (
    "doc_id", "acl", "tags", "policy_tags", "source", "language", "team_id", EFFECTIVE_FIELD,
)
INTEGER_PAYLOAD_FIELDS = ("version", "chunk_index")
FLOAT_PAYLOAD_FIELDS = ("effective_from_ts", "effective_to_ts")
TENANT_FIELD = "tenant_id"
