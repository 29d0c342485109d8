"""Query latency of Cairn's search path next to the raw engine query, at 5k and 100k chunks.

    .venv/bin/python benchmarks/latency.py

5k = SciFact (real embeddings); 100k = SciFact plus 95k synthetic chunks (real vectors with
noise, real BM25 vectors of random abstracts). Query vectors are the real embedder's, computed
up front: the ratios compare the search path (filters, ACL scope, gatherer batch, fusion, version
dedupe, rerank, thread hops) with the bare engine call on the same prebuilt request; the query
embedding is reported on its own line.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _scifact import (
    PRINCIPAL,
    SCRATCH,
    PrecomputedEmbedder,
    build_engine,
    corpus_vectors,
    embed_cached,
    interleaved,
    load_scifact,
    payload,
    percentiles,
    scifact_points,
    searcher_for,
    service_for,
)

from core.models import AccessScope, IndexPoint, IndexQuery, chunk_id
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.sparse import Bm25SparseEncoder

ROUNDS = 2


def synthetic(points: list[IndexPoint], n: int, seed: int = 7) -> list[IndexPoint]:
    rng = np.random.default_rng(seed)
    base = np.array([p.dense for p in points], dtype=np.float32)
    out: list[IndexPoint] = []
    for i in range(n):
        j = int(rng.integers(len(points)))
        v = base[j] + rng.normal(0, 0.05, base.shape[1]).astype(np.float32)
        v /= np.linalg.norm(v)
        src = points[int(rng.integers(len(points)))]
        doc = f"syn{i}"
        out.append(
            IndexPoint(
                chunk_id("bench", doc, 1, 0), v.tolist(), src.sparse, payload(doc, "", src.payload["text"])
            )
        )
    return out


def raw_requests(index: Any, searcher: Any, texts: list[str]) -> list[Any]:
    """The bare engine request per query: hybrid, top 10 with payloads, tenant + ACL filter."""
    scope = AccessScope.of(PRINCIPAL)
    flt = searcher.base_filter(None)
    reqs = []
    for t in texts:
        e = searcher.encode(t)
        q = IndexQuery(scope=scope, filter=flt, dense=e.dense, sparse=e.sparse, limit=10, prefetch_limit=50)
        reqs.append(index._request(q))
    return reqs


async def shapes_timed(index: Any, service: Any, texts: list[str]) -> dict[str, list[float]]:
    """The raw engine request and the search path with and without rerank, per query."""
    reqs = raw_requests(index, service._searcher, texts)
    shard = index._open()

    async def raw(i: int) -> None:
        shard.query(reqs[i])

    async def hybrid(i: int) -> None:
        await service.retrieve(PRINCIPAL, texts[i], top_k=5, rerank=False)

    async def reranked(i: int) -> None:
        await service.retrieve(PRINCIPAL, texts[i], top_k=5, rerank=True)

    shapes = {"raw_engine_hybrid": raw, "hybrid": hybrid, "hybrid+rerank": reranked}
    wall, _ = await interleaved(shapes, len(texts), rounds=ROUNDS)
    return wall


def measure(index: Any, embedder: Any, sparse: Bm25SparseEncoder, texts: list[str]) -> dict[str, Any]:
    service = service_for(searcher_for(index, embedder, sparse))
    samples = asyncio.run(shapes_timed(index, service, texts))
    raw = percentiles(samples.pop("raw_engine_hybrid"))
    out: dict[str, Any] = {"raw_engine_hybrid": raw}
    for name, got in samples.items():
        p = percentiles(got)
        out[name] = {
            **p,
            "p50_ratio": round(p["p50_ms"] / raw["p50_ms"], 2),
            "p95_ratio": round(p["p95_ms"] / raw["p95_ms"], 2),
        }
    return out


def main() -> None:
    ds = load_scifact("test")
    real = SentenceTransformerEmbedder()
    texts = [ds.queries[q] for q in sorted(ds.queries)]
    q_vecs = embed_cached(real, texts, "scifact_test_queries")
    embedder = PrecomputedEmbedder(real, texts, q_vecs)
    sparse = Bm25SparseEncoder()
    points, _ = scifact_points(ds, corpus_vectors(ds, real), sparse)
    real.warm_up()
    t0 = time.perf_counter()
    for t in texts[:100]:
        real.embed_query(t)
    result: dict[str, Any] = {
        "query_embedding_ms_mean": round(10 * (time.perf_counter() - t0), 2),
        "queries": len(texts) * ROUNDS,
    }
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        small = build_engine(Path(tmp) / "s5k", points)
        try:
            result["5k"] = measure(small, embedder, sparse, texts)
        finally:
            small.close()
        big_points = points + synthetic(points, 100_000 - len(points))
        t0 = time.perf_counter()
        big = build_engine(Path(tmp) / "s100k", big_points)
        result["100k_upsert_s"] = round(time.perf_counter() - t0, 1)
        try:
            result["100k"] = measure(big, embedder, sparse, texts)
        finally:
            big.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
