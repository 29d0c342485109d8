"""Shared plumbing for the retrieval benchmarks: SciFact through Cairn's own engine path.

The corpus goes in the way production writes it — Cairn's embedder (the default precision) and
`Bm25SparseEncoder` into an `EdgeIndex` with the production payload — one point per abstract
(SciFact abstracts fit the model window). Embeddings are cached under /tmp/cairn_cache, keyed by
model, precision and a hash of the texts, so only the first run pays the minutes of embedding.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.models import (  # noqa: E402
    EFFECTIVE_ALWAYS,
    EFFECTIVE_FIELD,
    EFFECTIVE_MAX_TS,
    EFFECTIVE_MIN_TS,
    IndexPoint,
    Principal,
    chunk_id,
)
from retrieval.embedder import SentenceTransformerEmbedder  # noqa: E402
from retrieval.evaluation import BeirDataset, evaluate_run, load_beir  # noqa: E402
from retrieval.sparse import Bm25SparseEncoder  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CACHE = Path("/tmp/cairn_cache")
# engines for benchmarks live in memory-backed /dev/shm where there is one
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
TENANT = "bench"
PRINCIPAL = Principal(tenant_id=TENANT, user="bench", groups=("all",))


def skip_without_data(name: str = "scifact") -> Path:
    """Print a JSON skip message and exit 0 when the shared evaluation data is absent."""
    path = DATA / name
    if not (path / "corpus.jsonl").is_file() and not (path / "qa.jsonl").is_file():
        print(json.dumps({"skipped": True, "reason": f"no evaluation data at {path}"}))
        raise SystemExit(0)
    return path


def embed_cached(embedder: SentenceTransformerEmbedder, texts: Sequence[str], name: str) -> np.ndarray:
    key = hashlib.sha1(
        "\x1f".join([embedder.model_id, getattr(embedder, "_precision", ""), *texts]).encode()
    ).hexdigest()[:12]
    path = CACHE / f"{name}-cairn-{key}.npy"
    if path.exists():
        return np.load(path)
    t0 = time.perf_counter()
    arr = np.asarray(embedder.embed_documents(list(texts)), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    print(f"embedded {len(texts)} texts for {name} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return arr


def payload(doc_id: str, title: str, text: str, **extra: Any) -> dict[str, Any]:
    """The payload every production chunk carries (see core.models), for one whole document."""
    return {
        "tenant_id": TENANT,
        "doc_id": doc_id,
        "version": 1,
        "chunk_index": 0,
        "text": text,
        "char_start": 0,
        "char_end": len(text),
        "section_path": [],
        "page": None,
        "title": title,
        "source": "upload",
        "tags": [],
        "policy_tags": [],
        "language": "en",
        "team_id": None,
        "acl": ["group:all"],
        "effective_from_ts": EFFECTIVE_MIN_TS,
        "effective_to_ts": EFFECTIVE_MAX_TS,
        EFFECTIVE_FIELD: EFFECTIVE_ALWAYS,
        **extra,
    }


def scifact_points(
    ds: BeirDataset, vectors: np.ndarray, sparse: Bm25SparseEncoder
) -> tuple[list[IndexPoint], dict[str, str]]:
    """Points for the corpus and the chunk id -> BEIR doc id map."""
    points: list[IndexPoint] = []
    to_doc: dict[str, str] = {}
    for row, (doc_id, doc) in zip(vectors.tolist(), ds.corpus.items(), strict=True):
        cid = chunk_id(TENANT, doc_id, 1, 0)
        to_doc[cid] = doc_id
        points.append(
            IndexPoint(cid, row, sparse.encode_document(doc.full_text), payload(doc_id, doc.title, doc.text))
        )
    return points, to_doc


def load_scifact(split: str = "test") -> BeirDataset:
    return load_beir(skip_without_data(), split)


def scores(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    m = evaluate_run(run, qrels, ks=(10, 100), metrics=("ndcg", "recall", "mrr"))
    return {k: round(m[k], 4) for k in ("ndcg@10", "recall@100", "mrr@10")}


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
    }


async def interleaved(
    shapes: Mapping[str, Callable[[int], Awaitable[None]]], n: int, rounds: int = 1
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Every shape once per query 0..n-1, in an order rotated per query (and per round): wall
    time samples (ms) and total CPU seconds (process, engine threads included) per shape. A
    machine whose speed drifts during the run (a busy neighbour) then slows every shape alike,
    so the ratios between shapes stay fair."""
    names = list(shapes)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    for r in range(rounds):
        for i in range(n):
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:
                c0, t0 = time.process_time(), time.perf_counter()
                await shapes[name](i)
                wall[name].append(1000 * (time.perf_counter() - t0))
                cpu[name] += time.process_time() - c0
    return wall, cpu


def corpus_vectors(ds: BeirDataset, embedder: SentenceTransformerEmbedder) -> np.ndarray:
    return embed_cached(embedder, [d.full_text for d in ds.corpus.values()], "scifact_docs")


if __name__ == "__main__":  # warm the cache: corpus, test and train queries
    e = SentenceTransformerEmbedder()
    test, train = load_scifact("test"), load_scifact("train")
    corpus_vectors(test, e)
    embed_cached(e, [test.queries[q] for q in sorted(test.queries)], "scifact_test_queries")
    embed_cached(e, [train.queries[q] for q in sorted(train.queries)], "scifact_train_queries")


class PrecomputedEmbedder:
    """The real embedder's query vectors, computed in one batch (and cached) up front, so that
    per-query timings measure the search path rather than the model; unknown text falls back to
    the model. Batched and single embedding agree to ~1e-6 cosine."""

    def __init__(self, real: SentenceTransformerEmbedder, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._real = real
        self._known = {t: v for t, v in zip(texts, vectors.tolist(), strict=True)}
        self.model_id = real.model_id
        self.dim = vectors.shape[1]

    def warm_up(self) -> None:
        pass

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        v = self._known.get(text)
        return v if v is not None else self._real.embed_query(text)


def build_engine(path: Path, points: list[IndexPoint], *, hnsw_threshold_kb: int | None = None) -> Any:
    from retrieval.index.edge import EdgeIndex

    index = EdgeIndex(path, dense_dim=len(points[0].dense), hnsw_indexing_threshold_kb=hnsw_threshold_kb)
    index.warm_up()
    index.upsert(points)
    return index


def searcher_for(index: Any, embedder: Any, sparse: Bm25SparseEncoder, **kw: Any) -> Any:
    from retrieval.search import HybridSearcher

    return HybridSearcher(embedder, sparse, index, **kw)


def service_for(searcher: Any, **defaults: Any) -> Any:
    from retrieval.gatherers import GathererRegistry
    from retrieval.rerank import LearnedReranker
    from retrieval.service import RetrievalDefaults, RetrievalService

    reranker = LearnedReranker()
    reranker.warm_up()
    return RetrievalService(
        searcher, GathererRegistry.from_yaml(), reranker, defaults=RetrievalDefaults(**defaults)
    )
