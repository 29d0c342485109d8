"""Tables for the governance feature (migration app/migrations/versions/*_governance.py)."""

from __future__ import annotations

from core.tables import Base

__all__ = ["Base"]
