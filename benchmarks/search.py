"""Foundation search benchmark: HNSW recall vs exact, `/v1/search` latency in-process next to the
raw engine query, and SciFact quality for sparse / dense / hybrid next to rank-bm25. One JSON.

    .venv/bin/python benchmarks/search.py

`/v1/search` is the real route and service in a FastAPI app driven by TestClient; its container is
reduced to the retrieval service and a fixed principal, so the figures are the HTTP + search path,
not SQL key lookup.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from _scifact import (
    PRINCIPAL,
    SCRATCH,
    PrecomputedEmbedder,
    build_engine,
    corpus_vectors,
    embed_cached,
    load_scifact,
    percentiles,
    scifact_points,
    searcher_for,
    service_for,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient
from latency import raw_engine, synthetic
from quality import baselines, cairn_run

from app import errors
from app.routes import search as search_route
from core.models import AccessScope, IndexQuery
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.sparse import Bm25SparseEncoder


def hnsw_recall(points: list[Any], q_vecs: np.ndarray, tmp: Path) -> dict[str, Any]:
    index = build_engine(tmp / "hnsw", points, hnsw_threshold_kb=1_000)
    try:
        t0 = time.perf_counter()
        index.optimize()
        build_s = time.perf_counter() - t0
        docs = np.array([p.dense for p in points], dtype=np.float32)
        ids = [p.id for p in points]
        scope, hits, approx_ms = AccessScope.of(PRINCIPAL), 0, []
        for qv in q_vecs:
            exact = {ids[i] for i in np.argsort(-(docs @ qv))[:10]}
            t0 = time.perf_counter()
            got = index.query(IndexQuery(scope=scope, dense=qv.tolist(), limit=10))
            approx_ms.append(1000 * (time.perf_counter() - t0))
            hits += len(exact & {h.id for h in got})
        return {
            "recall@10": round(hits / (10 * len(q_vecs)), 4),
            "hnsw_build_s": round(build_s, 1),
            **percentiles(approx_ms),
        }
    finally:
        index.close()


def http_latency(service: Any, texts: list[str]) -> dict[str, float]:
    app = FastAPI()
    errors.install(app)
    app.include_router(search_route.router)
    app.state.container = SimpleNamespace(
        retrieval=service, keys=SimpleNamespace(authenticate=lambda _k: PRINCIPAL)
    )
    samples = []
    with TestClient(app) as client:
        for t in texts:
            t0 = time.perf_counter()
            r = client.post(
                "/v1/search",
                json={"query": t, "top_k": 5, "rerank": False},
                headers={"Authorization": "Bearer x"},
            )
            samples.append(1000 * (time.perf_counter() - t0))
            assert r.status_code == 200, r.text
    return percentiles(samples)


def main() -> None:
    ds = load_scifact("test")
    real = SentenceTransformerEmbedder()
    qids = sorted(ds.queries)
    texts = [ds.queries[q] for q in qids]
    q_vecs = embed_cached(real, texts, "scifact_test_queries")
    embedder = PrecomputedEmbedder(real, texts, q_vecs)
    sparse = Bm25SparseEncoder()
    doc_vecs = corpus_vectors(ds, real)
    points, to_doc = scifact_points(ds, doc_vecs, sparse)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        out["hnsw_vs_exact_5k"] = hnsw_recall(points, q_vecs, Path(tmp))
        for label, pts in (("5k", points), ("100k", points + synthetic(points, 100_000 - len(points)))):
            index = build_engine(Path(tmp) / label, pts)
            try:
                searcher = searcher_for(index, embedder, sparse)
                service = service_for(searcher)
                raw = percentiles(raw_engine(index, searcher, texts))
                http = http_latency(service, texts)
                out[f"latency_{label}"] = {
                    "raw_engine_hybrid": raw,
                    "http_v1_search": http,
                    "p95_ratio": round(http["p95_ms"] / raw["p95_ms"], 2),
                }
                if label == "5k":
                    quality = {}
                    for name, kw in (
                        ("sparse", {"mode": "sparse"}),
                        ("dense", {"mode": "dense"}),
                        ("hybrid", {}),
                    ):
                        run, _ = asyncio.run(
                            cairn_run(service, ds, qids, to_doc, top_k=100, rerank=False, **kw)
                        )
                        from _scifact import scores

                        quality[name] = scores(run, ds.qrels)
                    out["scifact_test"] = {**quality, **baselines(ds, doc_vecs, qids, q_vecs)}
            finally:
                index.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
