"""Tables for the security feature (migration app/migrations/versions/*_security.py)."""

from __future__ import annotations

from core.tables import Base

__all__ = ["Base"]
