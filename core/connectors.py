"""The connector contract: a source Cairn keeps a copy of, read incrementally.

Split by capability (after Onyx): `poll` reads what changed since a checkpoint and yields
documents or per-item failures, so one bad row never stops a sync; `list_ids` names everything
the source holds right now, which is how deletions are found and how reconciliation can say
exactly which items are missing. A connector only reads; deciding what to index, skip or delete
is the sync service's job.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ACL_PREFIXED = re.compile(r"^(user|group):.+$|^tenant:\*$")


class SourceDocument(BaseModel):
    """One item as the source holds it, already mapped onto Cairn's ACL principals."""

    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(min_length=1, max_length=512)
    title: str = ""
    content: bytes
    filename: str
    content_type: str | None = None
    acl: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    updated_at: datetime | None = None
    content_hash: str = ""

    @model_validator(mode="after")
    def _hash(self) -> SourceDocument:
        if not self.content_hash:
            self.content_hash = hashlib.sha256(self.content).hexdigest()
        return self

    def fingerprint(self) -> str:
        """Changes when anything that ends up in the index changes (text, title, tags,
        metadata), so an unchanged item is skipped without re-embedding. ACL is kept apart."""
        described = json.dumps([self.content_hash, self.title, sorted(self.tags), self.metadata],
                               sort_keys=True, default=str)
        return hashlib.sha256(described.encode()).hexdigest()


class SourceFailure(BaseModel):
    """An item (or, with no external_id, a whole page or batch) the source could not deliver.
    It is counted and reported; it never stops the sync. Deletions stay safe because they are
    decided by `list_ids`, which raises rather than return a partial listing."""

    external_id: str | None = None
    reason: str


class SyncCheckpoint(BaseModel):
    """Opaque per-connector cursor (a timestamp, file stamps, ...). Empty = read everything."""

    state: dict[str, Any] = Field(default_factory=dict)


SourceItem = SourceDocument | SourceFailure


@runtime_checkable
class Connector(Protocol):
    """One instance per sync: cheap to build from its config, holds no state between syncs
    other than what it returns in `next_checkpoint()`."""

    def poll(self, checkpoint: SyncCheckpoint) -> Iterator[SourceItem]:
        """Everything new or changed since `checkpoint` (everything if it is empty). Yielding
        an unchanged item is allowed; the sync skips it by fingerprint."""
        ...

    def next_checkpoint(self) -> SyncCheckpoint:
        """Where the next poll starts; only meaningful after `poll` was read to the end."""
        ...

    def list_ids(self) -> set[str]:
        """Every external id the source holds now. Raises core.errors.Unavailable when the
        listing cannot be complete (never a partial set: that would delete documents)."""
        ...

    def close(self) -> None: ...


def split_values(values: Any) -> list[str]:
    """A list, or a comma / semicolon / whitespace separated string -> non-empty strings."""
    if values is None:
        return []
    items = values if isinstance(values, list | tuple | set) else re.split(r"[,\s;]+", str(values))
    return [str(v).strip() for v in items if str(v).strip()]


def map_acl(values: Any, prefix: str = "group:") -> list[str]:
    """Source permissions -> Cairn ACL strings. A bare name gets `prefix` (`support` ->
    `group:support`); `*` or `everyone` -> `tenant:*`; prefixed entries pass through."""
    out: set[str] = set()
    for name in split_values(values):
        if name in ("*", "everyone", "tenant:*"):
            out.add("tenant:*")
        elif _ACL_PREFIXED.match(name):
            out.add(name)
        else:
            out.add(f"{prefix}{name}")
    return sorted(out)
