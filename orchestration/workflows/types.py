"""Shapes the engine exposes (review decisions, run views) and its internal failure signal."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.errors import CairnError
from orchestration.workflows.expressions import ExpressionError
from orchestration.workflows.store import RunRecord, StepEvent


class ReviewDecision(BaseModel):
    action: Literal["approve", "edit", "reject"]
    text: str | None = Field(default=None, max_length=100_000)  # required for `edit`
    comment: str = Field(default="", max_length=4000)


class RunView(BaseModel):
    run: RunRecord
    events: list[StepEvent]


class StepFailed(Exception):
    def __init__(self, step_id: str, reason: str) -> None:
        super().__init__(f"step {step_id!r} failed: {reason}")
        self.step_id = step_id
        self.reason = reason


def safe_error(exc: BaseException) -> str:
    """Messages stored in the run log may be shown to users: only our own errors are spelled out."""
    if isinstance(exc, CairnError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ExpressionError):
        return f"expression error: {exc}"
    return f"internal error ({type(exc).__name__})"
