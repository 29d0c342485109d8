"""The reranker contract, beside the family it describes.

Cheap constructor, heavy state in `warm_up()` (called once at process start; `rerank` warms up
lazily if nobody did). `rerank` never mutates its input: it returns copies, best first, whose
`score` is the reranker's score and whose `scores["rerank"]` records it next to the earlier stage
scores, so `explain` can show every stage.

`vectors`, when given, are the chunks' stored dense vectors, aligned with `chunks` (None where
one is missing); a reranker that can use them says so with a true `uses_vectors` attribute, and
the retrieval service then fetches them from the index and passes them. Others are called
without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from core.models import RetrievedChunk


@runtime_checkable
class Reranker(Protocol):
    def warm_up(self) -> None: ...

    def rerank(
        self,
        query: str,
        chunks: list[RetrievedChunk],
        top_k: int | None = None,
        vectors: Sequence[Sequence[float] | None] | None = None,
    ) -> list[RetrievedChunk]: ...
