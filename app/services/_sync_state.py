"""The bookkeeping of one sync in progress: what is known of each item, running counts, and
item rows waiting to be written in the next batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.services.connector_models import MAX_REPORTED_ERRORS


@dataclass
class Known:
    doc_id: str
    fingerprint: str
    acl: list[str]
    status: str
    live: bool


@dataclass
class SyncRun:
    """Counts and pending writes of one sync in progress."""

    sync_id: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("seen", "indexed", "unchanged", "failed", "deleted"), 0))
    errors: list[dict[str, Any]] = field(default_factory=list)
    writes: dict[str, dict[str, Any]] = field(default_factory=dict)  # external id -> item fields
    submitted: dict[str, str] = field(default_factory=dict)  # ingest job id -> external id

    def fail(self, external_id: str | None, reason: str) -> None:
        self.counts["failed"] += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"external_id": external_id, "reason": reason})


