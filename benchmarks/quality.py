"""Retrieval quality on SciFact test through Cairn's own engine path, next to baselines computed
in the same run. Prints JSON.

    .venv/bin/python benchmarks/quality.py [--tune] [--dataset scifact|xquad]

Cairn rows go through `RetrievalService` -> `EdgeIndex` (the embedded Qdrant engine) with
`Bm25SparseEncoder` and the production embedder's vectors (bf16, cached under /tmp/cairn_cache).
Baselines: rank-bm25 BM25Okapi (lowercase, stopwords, Snowball) and exact dense cosine in numpy
over the very same vectors. `--tune` instead grid-searches the fusion settings and the rerank
depth on SciFact TRAIN (never on test), which is how the defaults in core/settings.py were chosen.
`--dataset xquad` runs the same rows on XQuAD (English; each question's passage is its one relevant
document), data that neither the fusion defaults nor the reranker were tuned on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
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
    load_scifact,
    scifact_points,
    scores,
    searcher_for,
    service_for,
)
from rank_bm25 import BM25Okapi

from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.evaluation import BeirDataset
from retrieval.evaluation.beir import BeirDocument
from retrieval.evaluation.metrics import ndcg_at_k
from retrieval.rerank.features import tokenize
from retrieval.sparse import Bm25SparseEncoder


def baselines(ds: BeirDataset, doc_vecs: np.ndarray, qids: list[str], q_vecs: np.ndarray) -> dict[str, Any]:
    ids = list(ds.corpus)
    bm25 = BM25Okapi([tokenize(ds.corpus[i].full_text) for i in ids])
    bm_run, dense_run = {}, {}
    sims = q_vecs @ doc_vecs.T
    for n, qid in enumerate(qids):
        s = bm25.get_scores(tokenize(ds.queries[qid]))
        bm_run[qid] = [ids[i] for i in np.argsort(-s, kind="stable")[:100]]
        dense_run[qid] = [ids[i] for i in np.argsort(-sims[n], kind="stable")[:100]]
    return {
        "rank_bm25_BM25Okapi": scores(bm_run, ds.qrels),
        "exact_dense_numpy": scores(dense_run, ds.qrels),
    }


async def cairn_run(service: Any, ds: BeirDataset, qids: list[str], to_doc: dict[str, str], **kw: Any) -> Any:
    run: dict[str, list[str]] = {}
    spent = 0.0
    for qid in qids:
        t0 = time.perf_counter()
        res = await service.retrieve(PRINCIPAL, ds.queries[qid], **kw)
        spent += time.perf_counter() - t0
        run[qid] = [to_doc[c.chunk_id] for c in res.chunks]
    return run, round(1000 * spent / len(qids), 3)


def paired(a: dict[str, list[str]], b: dict[str, list[str]], qrels: dict[str, dict[str, int]],
           draws: int = 20_000) -> dict[str, Any]:
    """Is run b's nDCG@10 gain over run a more than noise? Per-query differences: their mean, a
    bootstrap 95% interval of it, and a two-sided paired randomization (sign-flip) p-value."""
    qids = sorted(q for q in qrels if q in a and q in b)
    d = np.array([ndcg_at_k(b[q], qrels[q], 10) - ndcg_at_k(a[q], qrels[q], 10) for q in qids])
    rng = np.random.default_rng(0)
    boot = d[rng.integers(0, len(d), size=(draws, len(d)))].mean(axis=1)
    flips = (rng.integers(0, 2, size=(draws, len(d))) * 2 - 1) @ d / len(d)
    return {
        "mean_gain": round(float(d.mean()), 4),
        "ci95": [round(float(x), 4) for x in np.percentile(boot, [2.5, 97.5])],
        "p_randomization": round(float((np.abs(flips) >= abs(d.mean()) - 1e-12).mean()), 4),
        "queries_up": int((d > 1e-9).sum()),
        "queries_down": int((d < -1e-9).sum()),
    }


async def evaluate(service: Any, ds: BeirDataset, qids: list[str], to_doc: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    runs: dict[str, dict[str, list[str]]] = {}
    configs = {
        "sparse": {"mode": "sparse", "rerank": False},
        "dense": {"mode": "dense", "rerank": False},
        "hybrid": {"rerank": False},
        "hybrid+rerank": {"rerank": True},
    }
    for name, kw in configs.items():
        run, ms = await cairn_run(service, ds, qids, to_doc, top_k=100, **kw)
        out[name] = {**scores(run, ds.qrels), "ms_per_query": ms}
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
        runs[name] = run
        if name.startswith("hybrid"):  # what a user asking for 10 results gets
            run10, _ = await cairn_run(service, ds, qids, to_doc, top_k=10, **kw)
            out[name]["ndcg@10_top_k_10"] = scores(run10, ds.qrels)["ndcg@10"]
            runs[f"{name} top_k 10"] = run10
    out["rerank_gain_over_hybrid"] = {
        "top_k_100": paired(runs["hybrid"], runs["hybrid+rerank"], ds.qrels),
        "top_k_10": paired(runs["hybrid top_k 10"], runs["hybrid+rerank top_k 10"], ds.qrels),
    }
    return out


async def tune(searcher: Any, ds: BeirDataset, to_doc: dict[str, str]) -> dict[str, Any]:
    """top_k=10 requests: what is tuned is nDCG@10 / MRR@10 (recall@100 reads 0 here)."""
    qids = sorted(ds.queries)
    grid: list[dict[str, Any]] = [
        {"rrf_k": k, "dense_weight": dw, "sparse_weight": sw}
        for k in (20, 60)
        for dw, sw in ((1.0, 1.0), (1.0, 0.8), (0.8, 1.0))
    ] + [{"fusion": "dbsf"}]
    out: dict[str, Any] = {}
    for cfg in grid:
        service = service_for(searcher, **cfg)
        run, _ = await cairn_run(service, ds, qids, to_doc, top_k=10, rerank=False)
        out[json.dumps(cfg, sort_keys=True)] = scores(run, ds.qrels)
        print(json.dumps({"tune": cfg, **out[json.dumps(cfg, sort_keys=True)]}), file=sys.stderr, flush=True)
    for fusion in ("rrf", "dbsf"):
        for depth in (30, 50, 100):
            service = service_for(searcher, rerank_depth=depth, fusion=fusion)
            run, ms = await cairn_run(service, ds, qids, to_doc, top_k=10, rerank=True)
            key = f"{fusion}+rerank_depth={depth}"
            out[key] = {**scores(run, ds.qrels), "ms_per_query": ms}
            print(json.dumps({key: out[key]}), file=sys.stderr, flush=True)
    return out


def load_xquad() -> BeirDataset | None:
    """XQuAD as a BEIR dataset: passages deduplicated by text; a question's passage is relevant."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "xquad" / "qa.jsonl"
    if not path.exists():
        return None
    by_text: dict[str, str] = {}
    corpus: dict[str, BeirDocument] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        doc_id = by_text.setdefault(row["context"], f"p{len(by_text)}")
        corpus[doc_id] = BeirDocument(doc_id, row["title"].replace("_", " "), row["context"])
        queries[row["id"]] = row["question"]
        qrels[row["id"]] = {doc_id: 1}
    return BeirDataset(corpus, queries, qrels, "test")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--dataset", choices=["scifact", "xquad"], default="scifact")
    args = ap.parse_args()
    real = SentenceTransformerEmbedder()
    if args.dataset == "xquad":
        xquad = load_xquad()
        if xquad is None or args.tune:
            print(json.dumps({"skipped": "xquad data not found" if xquad is None else "--tune is SciFact-only"}))
            return
        test = xquad
        doc_vecs = embed_cached(real, [d.full_text for d in test.corpus.values()], "xquad_docs")
    else:
        test = load_scifact("test")
        doc_vecs = corpus_vectors(test, real)
    qids = sorted(test.queries)
    q_vecs = embed_cached(real, [test.queries[q] for q in qids], f"{args.dataset}_test_queries")
    texts, vecs = [test.queries[q] for q in qids], [q_vecs]
    if args.tune:
        train = load_scifact("train")
        tq = sorted(train.queries)
        texts += [train.queries[q] for q in tq]
        vecs.append(embed_cached(real, [train.queries[q] for q in tq], "scifact_train_queries"))
    embedder = PrecomputedEmbedder(real, texts, np.vstack(vecs))
    sparse = Bm25SparseEncoder()
    points, to_doc = scifact_points(test, doc_vecs, sparse)
    result: dict[str, Any] = {"dataset": f"{args.dataset} test", "queries": len(qids), "docs": len(points)}
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        index = build_engine(Path(tmp) / "shard", points)
        try:
            searcher = searcher_for(index, embedder, sparse)
            if args.tune:  # on TRAIN only; test figures come from a plain run
                result["tuning_on_scifact_train"] = await tune(searcher, train, to_doc)
            else:
                result["baselines"] = baselines(test, doc_vecs, qids, q_vecs)
                result["cairn"] = await evaluate(service_for(searcher), test, qids, to_doc)
        finally:
            index.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
