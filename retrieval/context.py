"""Packing the best chunks into a token budget, each behind a citation handle `[n]`.

Whole chunks only, in rank order: a chunk cut mid-sentence would have to be cited by a span that
no longer matches what the model saw. A chunk that does not fit is skipped and a smaller one
further down may still fit, so the budget is used rather than wasted on the first overflow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.models import RetrievedChunk

TokenCount = Callable[[str], int]


def approx_tokens(text: str) -> int:
    """~1.3 word pieces per English word (MiniLM's tokenizer on SciFact); used when no model
    tokenizer is at hand."""
    return max(1, round(len(text.split()) * 1.3))


@dataclass(frozen=True)
class ContextItem:
    n: int  # the citation handle: "[n]" in an answer refers to this chunk
    chunk: RetrievedChunk
    tokens: int


@dataclass(frozen=True)
class ContextWindow:
    items: tuple[ContextItem, ...]
    tokens: int
    budget: int
    skipped: tuple[str, ...]  # chunk ids that did not fit

    @property
    def text(self) -> str:
        return "\n\n".join(f"[{it.n}] {self.header(it.chunk)}\n{it.chunk.text}" for it in self.items)

    @staticmethod
    def header(chunk: RetrievedChunk) -> str:
        return chunk.title or chunk.doc_id


def build_context(
    chunks: Sequence[RetrievedChunk], budget_tokens: int, count: TokenCount = approx_tokens
) -> ContextWindow:
    """Greedy in rank order; the header line of each item counts against the budget too."""
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be >= 1, got {budget_tokens}")
    items: list[ContextItem] = []
    skipped: list[str] = []
    used = 0
    for chunk in chunks:
        cost = count(chunk.text) + count(f"[{len(items) + 1}] {ContextWindow.header(chunk)}")
        if used + cost > budget_tokens:
            skipped.append(chunk.chunk_id)
            continue
        items.append(ContextItem(len(items) + 1, chunk, cost))
        used += cost
    return ContextWindow(tuple(items), used, budget_tokens, tuple(skipped))
