"""Tables for the feedback feature (migration app/migrations/versions/*_feedback.py)."""

from __future__ import annotations

from core.tables import Base

__all__ = ["Base"]
