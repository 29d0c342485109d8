"""The reranker contract, beside the family it describes.

Cheap constructor, heavy state in `warm_up()` (called once at process start; `rerank` warms up
lazily if nobody did). `rerank` never mutates its input: it returns copies, best first, whose
`score` is the reranker's score and whose `scores["rerank"]` records it next to the earlier stage
scores, so `explain` can show every stage.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.models import RetrievedChunk


@runtime_checkable
class Reranker(Protocol):
    def warm_up(self) -> None: ...

    def rerank(
        self, query: str, chunks: list[RetrievedChunk], top_k: int | None = None
    ) -> list[RetrievedChunk]: ...
