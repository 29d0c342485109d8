"""Four gatherers in one request vs the slowest of them alone vs the four one after another.

    .venv/bin/python benchmarks/gatherers.py

SciFact test (5k real chunks) with the shipped example gatherers; chunks get tags and sources so
each gatherer sees its own slice (product_docs 30%, policy 20%, tickets 50% of which half are
resolved, 10 customers). Query vectors are precomputed. Two request shapes: `plain` (hybrid, no
rerank: one engine-fused query per gatherer) and `rerank` (the server default: per-gatherer dense
and BM25 lists fused here, then the learned reranker).

Next to wall time it records the process CPU time per request (engine threads included). The
embedded engine holds the GIL for every call, so its queries cannot overlap; and even an engine
that released it could not beat `cpu_bound_ratio` = max(1, CPU of the four / (cores x CPU of the
slowest single)): the work itself, spread over every core of this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import replace
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
    percentiles,
    scifact_points,
    searcher_for,
    service_for,
)

from app.cli import freeze_startup_objects
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.sparse import Bm25SparseEncoder

GATHERERS = ["product_docs", "policies", "customer_history", "similar_tickets"]
PARAMS = {"customer_id": "c1"}


def tag(points: list[Any]) -> list[Any]:
    rng = np.random.default_rng(3)
    out = []
    for p in points:
        r = rng.random()
        if r < 0.3:
            extra = {"tags": ["product_docs"]}
        elif r < 0.5:
            extra = {"tags": ["policy"]}
        else:
            tags = [f"customer:c{int(rng.integers(10))}"] + (["resolved"] if rng.random() < 0.5 else [])
            extra = {"tags": tags, "source": "tickets"}
        out.append(replace(p, payload={**p.payload, **extra}))
    return out


async def run(service: Any, texts: list[str], rerank: bool) -> dict[str, Any]:
    for t in texts[:20]:  # warm the engine and the thread pool
        await service.retrieve(PRINCIPAL, t, gatherers=GATHERERS, params=PARAMS, rerank=rerank)
    groups: dict[str, list[list[str]]] = {
        **{g: [[g]] for g in GATHERERS},
        "parallel_4": [GATHERERS],
        "serial_4": [[g] for g in GATHERERS],
    }

    def shape(name: str) -> Callable[[int], Awaitable[None]]:
        async def one(i: int) -> None:
            for group in groups[name]:
                await service.retrieve(PRINCIPAL, texts[i], gatherers=group, params=PARAMS, rerank=rerank)

        return one

    wall, cpu = await interleaved({name: shape(name) for name in groups}, len(texts))
    stats = {k: {**percentiles(wall[k]), "cpu_ms_per_request": round(1000 * cpu[k] / len(texts), 3)} for k in groups}
    singles = {g: stats[g] for g in GATHERERS}
    slowest = max(singles.values(), key=lambda p: p["p50_ms"])
    parallel, serial = stats["parallel_4"], stats["serial_4"]
    cores = os.cpu_count() or 1
    work = parallel["cpu_ms_per_request"] / slowest["cpu_ms_per_request"]
    return {
        "single": singles,
        "parallel_4": parallel,
        "serial_4": serial,
        "parallel_vs_slowest_p50": round(parallel["p50_ms"] / slowest["p50_ms"], 2),
        "parallel_vs_slowest_p95": round(parallel["p95_ms"] / slowest["p95_ms"], 2),
        "parallel_vs_serial_p50": round(parallel["p50_ms"] / serial["p50_ms"], 2),
        "cores": cores,
        "cpu_parallel_vs_slowest": round(work, 2),
        "cpu_bound_ratio": round(max(1.0, work / cores), 2),
    }


def main() -> None:
    ds = load_scifact("test")
    real = SentenceTransformerEmbedder()
    texts = [ds.queries[q] for q in sorted(ds.queries)]
    embedder = PrecomputedEmbedder(real, texts, embed_cached(real, texts, "scifact_test_queries"))
    sparse = Bm25SparseEncoder()
    points, _ = scifact_points(ds, corpus_vectors(ds, real), sparse)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        index = build_engine(Path(tmp) / "shard", tag(points))
        try:
            service = service_for(searcher_for(index, embedder, sparse))
            freeze_startup_objects()  # as `cairn serve` does once loaded
            result = {
                "plain": asyncio.run(run(service, texts, rerank=False)),
                "rerank": asyncio.run(run(service, texts, rerank=True)),
            }
        finally:
            index.close()
    print(json.dumps({"chunks": len(points), "queries": len(texts), **result}, indent=2))


if __name__ == "__main__":
    main()
