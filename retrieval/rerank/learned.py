"""The default reranker: a linear learning-to-rank model over cheap features.

No cross-encoder weights can be shipped or downloaded, so the default has to earn its keep from
signals the query path already has: per-stage scores (dense cosine, BM25) that fusion throws away
(RRF) or weighs one fixed way (DBSF), and lexical evidence (coverage, bigrams, proximity, title)
that neither stage models. A linear model keeps it explainable (`scores["rerank"]` is a weighted sum
of named features), makes it cost a few milliseconds per query, and lets it be trained with numpy
alone (`fit_pairwise`).

The shipped weights are fitted on SciFact train, on the lists production hands the reranker
(benchmarks/train_reranker.py records them from `RetrievalService` over the embedded engine): the
DBSF-fused top 30 (rerank_depth) of hybrid requests, and BM25-only and dense-only lists.

Three weight sets ship in `default_weights.json`: `full` for candidates that carry their stage
scores and their stored dense vectors (dense pseudo-relevance feedback, the `prf` feature),
`stages` for stage scores without vectors, and `text_only` for candidates with neither (e.g. a
fused engine query that returns only the fused score), so a missing input is never silently read
as a zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.models import RetrievedChunk
from retrieval.rerank.features import FEATURE_NAMES, Candidate, FloatArray, extract_features

DEFAULT_WEIGHTS = Path(__file__).with_name("default_weights.json")
STAGE_FEATURES = ("dense", "sparse")
# Chosen by 5-fold cross-validation on SciFact train: with real BM25 scores at hand, BM25 over the
# candidate list alone only adds noise; without them it is the best lexical score there is.
FULL_FEATURES = tuple(n for n in FEATURE_NAMES if n != "local_bm25")
STAGES_FEATURES = tuple(n for n in FULL_FEATURES if n != "prf")
TEXT_ONLY_FEATURES = tuple(n for n in FEATURE_NAMES if n not in (*STAGE_FEATURES, "prf"))
MODEL_FEATURES = {"full": FULL_FEATURES, "stages": STAGES_FEATURES, "text_only": TEXT_ONLY_FEATURES}


@dataclass(frozen=True)
class LinearRankModel:
    """score = ((x - mean) / std) . weights, over the features named in `names`."""

    names: tuple[str, ...]
    mean: FloatArray
    std: FloatArray
    weights: FloatArray

    def score(self, features: FloatArray) -> FloatArray:
        """`features` has one column per FEATURE_NAMES entry; columns not in `names` are ignored."""
        cols = [FEATURE_NAMES.index(n) for n in self.names]
        x = (features[:, cols] - self.mean) / self.std
        result: FloatArray = x @ self.weights
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weights": self.weights.tolist(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinearRankModel:
        names = tuple(str(n) for n in data["features"])
        unknown = [n for n in names if n not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"reranker weights name unknown features {unknown}; known: {FEATURE_NAMES}")
        arrays = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "std", "weights")]
        if any(a.shape != (len(names),) for a in arrays):
            raise ValueError(f"reranker weights need {len(names)} values each for mean, std and weights")
        return cls(names, arrays[0], arrays[1], arrays[2])


def fit_pairwise(
    groups: Sequence[tuple[FloatArray, Sequence[int] | np.ndarray]],
    names: Sequence[str] = FEATURE_NAMES,
    l2: float = 1e-3,
    iterations: int = 30,
) -> LinearRankModel:
    """Pairwise logistic (RankNet) fit by Newton's method on (features, grades) per query.

    Every query weighs the same however many pairs it has, so long judged lists do not dominate.
    Convex with an L2 term, so the result does not depend on a seed.
    """
    cols = [FEATURE_NAMES.index(n) for n in names]
    stacked = np.vstack([x[:, cols] for x, _ in groups])
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std[std < 1e-9] = 1.0
    diffs: list[FloatArray] = []
    pair_w: list[FloatArray] = []
    for x, grades in groups:
        g = np.asarray(grades)
        z = (x[:, cols] - mean) / std
        better, worse = np.nonzero(g[:, None] > g[None, :])
        if len(better) == 0:
            continue
        diffs.append(z[better] - z[worse])
        pair_w.append(np.full(len(better), 1.0 / len(better)))
    if not diffs:
        raise ValueError("no query has both a relevant and a non-relevant candidate to learn from")
    d, w = np.vstack(diffs), np.concatenate(pair_w)
    w = w / w.sum()
    beta = np.zeros(len(cols))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(d @ beta)))  # P(better ranked above worse)
        grad = -d.T @ (w * (1.0 - p)) + l2 * beta
        hess = (d * (w * p * (1.0 - p))[:, None]).T @ d + l2 * np.eye(len(cols))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return LinearRankModel(tuple(names), mean, std, beta)


def save_models(path: Path, models: Mapping[str, LinearRankModel], **meta: Any) -> None:
    payload = {"meta": meta, "models": {k: m.to_json() for k, m in models.items()}}
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def load_models(path: Path) -> dict[str, LinearRankModel]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: LinearRankModel.from_json(v) for k, v in data["models"].items()}


def chunk_features(
    query: str,
    chunks: Sequence[RetrievedChunk],
    dense_key: str = "dense",
    sparse_key: str = "sparse",
    vectors: Sequence[Sequence[float] | None] | None = None,
) -> tuple[FloatArray, str]:
    """The feature matrix the reranker scores, and which model fits what the chunks carry:
    `full` (stage scores and every chunk's vector), `stages`, or `text_only`. Training calls this
    too, so the model learns from exactly what it will be given."""
    vecs = list(vectors) if vectors is not None else [None] * len(chunks)
    if len(vecs) != len(chunks):
        raise ValueError(f"{len(vecs)} vectors for {len(chunks)} chunks")
    candidates = [
        Candidate(text=c.text, title=c.title, dense=c.scores.get(dense_key), sparse=c.scores.get(sparse_key), vector=v)
        for c, v in zip(chunks, vecs, strict=True)
    ]
    has_stages = any(c.dense is not None or c.sparse is not None for c in candidates)
    has_vectors = bool(candidates) and all(v is not None for v in vecs)
    kind = ("full" if has_vectors else "stages") if has_stages else "text_only"
    return extract_features(query, candidates), kind


class LearnedReranker:
    """Reorders fused candidates with the shipped linear model. Offline, numpy only.

    The incoming order is read as the fusion ranking (a feature), so pass chunks best first.
    Stage scores are read from `chunk.scores[dense_key]` (cosine) and `chunk.scores[sparse_key]`
    (BM25); when no chunk carries either, the `text_only` weights are used. `vectors` (the chunks'
    stored dense vectors, aligned with them) enable the `full` model; `uses_vectors` tells the
    retrieval service to fetch them from the index.
    """

    uses_vectors = True

    def __init__(
        self,
        weights_path: str | Path | None = None,
        dense_key: str = "dense",
        sparse_key: str = "sparse",
    ) -> None:
        self._path = Path(weights_path) if weights_path is not None else DEFAULT_WEIGHTS
        self._dense_key, self._sparse_key = dense_key, sparse_key
        self._models: dict[str, LinearRankModel] | None = None

    def warm_up(self) -> None:
        if self._models is None:
            models = load_models(self._path)
            if "stages" not in models and "full" in models and "prf" not in models["full"].names:
                models["stages"] = models["full"]  # a file from before `prf`: its full model needs no vectors
            missing = set(MODEL_FEATURES) - set(models)
            if missing:
                raise ValueError(f"reranker weights {self._path} lack models {sorted(missing)}")
            self._models = models

    def rerank(
        self,
        query: str,
        chunks: list[RetrievedChunk],
        top_k: int | None = None,
        vectors: Sequence[Sequence[float] | None] | None = None,
    ) -> list[RetrievedChunk]:
        if top_k is not None and top_k < 0:
            raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
        if not chunks:
            return []
        self.warm_up()
        assert self._models is not None
        features, kind = chunk_features(query, chunks, self._dense_key, self._sparse_key, vectors)
        scores = self._models[kind].score(features)
        order = np.argsort(-scores, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        return [
            chunks[i].model_copy(
                update={"score": float(scores[i]), "scores": {**chunks[i].scores, "rerank": float(scores[i])}}
            )
            for i in order
        ]
