"""Tables for the reindex feature (migration app/migrations/versions/*_reindex.py)."""

from __future__ import annotations

from core.tables import Base

__all__ = ["Base"]
