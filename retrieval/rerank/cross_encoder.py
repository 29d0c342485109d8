"""sentence-transformers CrossEncoder adapter, for deployments that configure a model directory.

Nothing is ever downloaded: the model must already be on disk, and it is loaded with
`local_files_only` so a wrong path fails at start-up with a message instead of trying the network.
This file is the only place in retrieval/ that imports sentence_transformers for reranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import Unavailable
from core.models import RetrievedChunk


class CrossEncoderReranker:
    def __init__(self, model_path: str, batch_size: int = 32, max_length: int = 512) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {max_length}")
        self.model_path = model_path
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None

    def warm_up(self) -> None:
        if self._model is not None:
            return
        if not Path(self.model_path).is_dir():
            raise Unavailable(
                f"cross-encoder model directory {self.model_path!r} does not exist; "
                "point the reranker model path at a local model or unset it to use the default reranker"
            )
        from sentence_transformers import CrossEncoder

        try:
            self._model = CrossEncoder(
                self.model_path,
                max_length=self.max_length,
                device="cpu",
                local_files_only=True,
            )
        except (OSError, ValueError) as exc:
            raise Unavailable(
                f"could not load the cross-encoder from {self.model_path!r}: it needs a config, "
                "weights and tokenizer files saved by transformers / sentence-transformers"
            ) from exc

    def rerank(
        self,
        query: str,
        chunks: list[RetrievedChunk],
        top_k: int | None = None,
        vectors: Sequence[Sequence[float] | None] | None = None,  # a cross-encoder reads text only
    ) -> list[RetrievedChunk]:
        if top_k is not None and top_k < 0:
            raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
        if not chunks:
            return []
        self.warm_up()
        pairs = [(query, f"{c.title}\n{c.text}" if c.title else c.text) for c in chunks]
        raw = self._model.predict(
            pairs, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        scores = np.asarray(raw, dtype=np.float64).reshape(len(chunks), -1)
        # one logit per pair; a two-label model is read as P(relevant) - P(not relevant) logits
        flat = scores[:, 0] if scores.shape[1] == 1 else scores[:, -1] - scores[:, 0]
        order = np.argsort(-flat, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        return [
            chunks[i].model_copy(
                update={"score": float(flat[i]), "scores": {**chunks[i].scores, "rerank": float(flat[i])}}
            )
            for i in order
        ]
