"""Train the default reranker on SciFact TRAIN, on exactly the candidate lists production hands
it, and compare it in the same run with plain fusion on SciFact TEST and on XQuAD (neither is used
for fitting or selection). Prints JSON.

    .venv/bin/python benchmarks/train_reranker.py [--write-weights] [--l2 X] [--select]

Candidates: the corpus goes into the embedded engine the way production writes it (see
benchmarks/_scifact.py: the production embedder's bf16 vectors, cached under /tmp/cairn_cache, and
`Bm25SparseEncoder`), and every query runs through `RetrievalService` with the production defaults
(DBSF fusion of the dense and BM25 lists in the staged gather path, rerank_depth 30). A recording
reranker keeps what the service hands the reranker: the fused head, each chunk with its cosine and
BM25 scores. Every kind of list the reranker meets is recorded, and the model is fitted on all of
them: hybrid requests with top_k=10 (the head is the whole 30-chunk list) and top_k=100 (the top 30
of 100; the prefetch grows with top_k and DBSF normalises over it, so the lists differ), and
BM25-only and dense-only requests (`mode`), whose chunks carry one stage score.

l2 is chosen from a grid by repeated 5-fold cross-validation on train (3 shuffles, queries split
by fold; score = mean nDCG@10 over the list kinds) unless --l2 is given. The feature sets are
FULL_FEATURES / STAGES_FEATURES / TEXT_ONLY_FEATURES in retrieval/rerank/learned.py (the
`full` model adds dense pseudo-relevance feedback from the candidates' stored vectors, which the
service fetches for the reranker; `stages` is the same without it). `--select` instead runs a
backward elimination by the same cross-validation and trains on what it keeps (an experiment: the
sets it prefers on train have not carried over to SciFact test, see docs/decisions.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _scifact import (
    CACHE,
    PRINCIPAL,
    SCRATCH,
    PrecomputedEmbedder,
    build_engine,
    corpus_vectors,
    embed_cached,
    load_scifact,
    scifact_points,
    searcher_for,
)
from quality import load_xquad, paired

from core.models import RetrievedChunk
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.evaluation import BeirDataset, evaluate_run
from retrieval.gatherers import GathererRegistry
from retrieval.rerank.features import FEATURE_NAMES
from retrieval.rerank.learned import (
    DEFAULT_WEIGHTS,
    FULL_FEATURES,
    STAGES_FEATURES,
    TEXT_ONLY_FEATURES,
    LearnedReranker,
    LinearRankModel,
    chunk_features,
    fit_pairwise,
    save_models,
)
from retrieval.rerank.protocol import Reranker
from retrieval.service import RetrievalDefaults, RetrievalService
from retrieval.sparse import Bm25SparseEncoder

# the lists the reranker meets: name -> (request top_k, retrieve() keywords)
KINDS: dict[str, tuple[int, dict[str, Any]]] = {
    "dbsf_top_k=10": (10, {}),
    "dbsf_top_k=100": (100, {}),
    "sparse_top_k=10": (10, {"mode": "sparse"}),
    "dense_top_k=10": (10, {"mode": "dense"}),
}
L2_GRID = (1e-4, 1e-3, 1e-2, 3e-2)
DROP_TOLERANCE = 0.0005


Vectors = Sequence[Sequence[float] | None] | None


class Recorder:
    """A reranker that changes nothing and keeps what it was given (the chunks and their stored
    vectors, which the service fetches for it as for the learned reranker), keyed by query text."""

    uses_vectors = True

    def __init__(self) -> None:
        self.seen: dict[str, tuple[list[RetrievedChunk], Vectors]] = {}

    def warm_up(self) -> None:
        pass

    def rerank(
        self, query: str, chunks: list[RetrievedChunk], top_k: int | None = None, vectors: Vectors = None
    ) -> list[RetrievedChunk]:
        self.seen[query] = (list(chunks), vectors)
        return list(chunks)


class Timed:
    """Wraps a reranker and adds up the time spent in it (features included; the vector fetch is
    the service's and is not counted)."""

    def __init__(self, inner: Reranker) -> None:
        self.inner, self.spent, self.calls = inner, 0.0, 0
        self.uses_vectors = getattr(inner, "uses_vectors", False)

    def warm_up(self) -> None:
        self.inner.warm_up()

    def rerank(
        self, query: str, chunks: list[RetrievedChunk], top_k: int | None = None, vectors: Vectors = None
    ) -> list[RetrievedChunk]:
        t0 = time.perf_counter()
        out = self.inner.rerank(query, chunks, top_k, vectors=vectors)
        self.spent += time.perf_counter() - t0
        self.calls += 1
        return out


@dataclass(frozen=True)
class Example:
    """One query's recorded reranker input: its features and grades, and the answer's tail."""

    ids: list[str]
    x: np.ndarray
    grades: np.ndarray
    tail: list[str]


Examples = dict[str, Example]  # by query id


def service(searcher: Any, reranker: Reranker | None, **defaults: Any) -> RetrievalService:
    return RetrievalService(searcher, GathererRegistry.from_yaml(), reranker, defaults=RetrievalDefaults(**defaults))


async def run_service(svc: RetrievalService, ds: BeirDataset, top_k: int, **kw: Any) -> dict[str, list[str]]:
    run: dict[str, list[str]] = {}
    for qid in sorted(ds.queries):
        res = await svc.retrieve(PRINCIPAL, ds.queries[qid], top_k=top_k, **kw)
        run[qid] = [c.doc_id for c in res.chunks]
    return run


async def record(searcher: Any, ds: BeirDataset, depth: int, top_k: int, **kw: Any) -> Examples:
    recorder = Recorder()
    run = await run_service(service(searcher, recorder, rerank_depth=depth), ds, top_k, rerank=True, **kw)
    out: Examples = {}
    for qid, answer in run.items():
        head, vectors = recorder.seen[ds.queries[qid]]
        ids = [c.doc_id for c in head]
        x, _ = chunk_features(ds.queries[qid], head, vectors=vectors)
        grades = np.array([ds.qrels.get(qid, {}).get(i, 0) for i in ids])
        out[qid] = Example(ids, x, grades, [d for d in answer if d not in set(ids)])
    return out


def reranked(model: LinearRankModel | None, examples: Examples, qids: Sequence[str]) -> dict[str, list[str]]:
    """The answer with the head reordered by `model` (None: as fused)."""
    run: dict[str, list[str]] = {}
    for qid in qids:
        e = examples[qid]
        order = range(len(e.ids)) if model is None else np.argsort(-model.score(e.x), kind="stable")
        run[qid] = [e.ids[i] for i in order] + e.tail
    return run


def fit(kinds: dict[str, Examples], qids: Sequence[str], names: Sequence[str], l2: float) -> LinearRankModel:
    return fit_pairwise([(k[q].x, k[q].grades) for k in kinds.values() for q in qids], names, l2=l2)


def ndcg10(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    return float(evaluate_run(run, {q: qrels[q] for q in run}, ks=(10,), metrics=("ndcg",))["ndcg@10"])


def cross_validate(
    kinds: dict[str, Examples], qrels: dict[str, dict[str, int]], names: Sequence[str], l2: float
) -> dict[str, float]:
    """Held-out nDCG@10 per list kind, the mean over 3 shuffled 5-fold splits of the queries."""
    totals = dict.fromkeys(kinds, 0.0)
    for seed in range(3):
        runs = out_of_fold(kinds, names, l2, seed)
        for k in kinds:
            totals[k] += ndcg10(runs[k], qrels) / 3
    return {k: round(v, 4) for k, v in totals.items()}


def out_of_fold(
    kinds: dict[str, Examples], names: Sequence[str], l2: float, seed: int
) -> dict[str, dict[str, list[str]]]:
    """Every query's answer reranked by a model fitted on the other four of five shuffled folds."""
    order = sorted(next(iter(kinds.values())))
    random.Random(seed).shuffle(order)
    folds = [order[i::5] for i in range(5)]
    runs: dict[str, dict[str, list[str]]] = {k: {} for k in kinds}
    for i, held in enumerate(folds):
        model = fit(kinds, [q for j, f in enumerate(folds) if j != i for q in f], names, l2)
        for k, examples in kinds.items():
            runs[k].update(reranked(model, examples, held))
    return runs


def held_out_gain(
    kinds: dict[str, Examples], qrels: dict[str, dict[str, int]], names: Sequence[str], l2: float
) -> dict[str, Any]:
    """The reranker's gain over the fused order on train queries it was not fitted on (one
    shuffled 5-fold split), per list kind, with `quality.paired`'s interval and p-value."""
    runs = out_of_fold(kinds, names, l2, seed=0)
    return {k: paired(reranked(None, e, sorted(e)), runs[k], qrels) for k, e in kinds.items()}


def cv_mean(kinds: dict[str, Examples], qrels: dict[str, dict[str, int]], names: Sequence[str], l2: float) -> float:
    return float(np.mean(list(cross_validate(kinds, qrels, names, l2).values())))


def choose_l2(
    kinds: dict[str, Examples], qrels: dict[str, dict[str, int]], names: Sequence[str]
) -> tuple[float, dict[str, float]]:
    scores = {l2: cv_mean(kinds, qrels, names, l2) for l2 in L2_GRID}
    return max(scores, key=lambda k: scores[k]), {str(k): round(v, 4) for k, v in scores.items()}


def select(
    kinds: dict[str, Examples], qrels: dict[str, dict[str, int]], pool: Sequence[str], l2: float
) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """Backward elimination: drop the feature whose loss helps the CV score most, while it costs
    less than DROP_TOLERANCE."""
    current = list(pool)
    best = cv_mean(kinds, qrels, current, l2)
    trace: list[dict[str, Any]] = [{"features": list(current), "cv_ndcg@10": round(best, 4)}]
    while len(current) > 2:
        trials = {n: cv_mean(kinds, qrels, [c for c in current if c != n], l2) for n in current}
        name, score = max(trials.items(), key=lambda kv: kv[1])
        trace.append({"drop": name, "cv_ndcg@10": round(score, 4)})
        if score < best - DROP_TOLERANCE:
            break
        best = max(best, score)
        current.remove(name)
    return tuple(current), trace


def scores(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    m = evaluate_run(run, qrels, ks=(10,), metrics=("ndcg", "recall", "mrr"))
    return {k: round(m[k], 4) for k in ("ndcg@10", "mrr@10", "recall@10")}


async def compare(searcher: Any, ds: BeirDataset, new: Path, previous: Path) -> dict[str, Any]:
    """top_k=10 requests through the service, side by side (benchmarks/quality.py has top_k=100)."""
    rows: dict[str, Any] = {}
    timed = {"new": Timed(LearnedReranker(new)), "previous": Timed(LearnedReranker(previous))}
    configs: dict[str, tuple[dict[str, Any], Reranker | None, dict[str, Any]]] = {
        "sparse": ({}, None, {"mode": "sparse"}),
        "sparse+rerank": ({}, LearnedReranker(new), {"mode": "sparse", "rerank": True}),
        "dense": ({}, None, {"mode": "dense"}),
        "dense+rerank": ({}, LearnedReranker(new), {"mode": "dense", "rerank": True}),
        "rrf": ({"fusion": "rrf"}, None, {}),
        "rrf+rerank": ({"fusion": "rrf"}, LearnedReranker(new), {"rerank": True}),
        "dbsf": ({}, None, {}),
        "dbsf+rerank": ({}, timed["new"], {"rerank": True}),
        "dbsf+rerank_previous_weights": ({}, timed["previous"], {"rerank": True}),
    }
    for name, (defaults, reranker, kw) in configs.items():
        rows[name] = scores(await run_service(service(searcher, reranker, **defaults), ds, 10, **kw), ds.qrels)
    rows["dbsf_rerank_ms_per_query"] = {k: round(1000 * t.spent / max(t.calls, 1), 3) for k, t in timed.items()}
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=RetrievalDefaults().rerank_depth)
    ap.add_argument("--l2", type=float, default=None, help="skip the l2 grid and use this value")
    ap.add_argument("--select", action="store_true", help="train on a backward-eliminated feature set")
    ap.add_argument("--write-weights", action="store_true")
    args = ap.parse_args()

    real = SentenceTransformerEmbedder()
    sparse = Bm25SparseEncoder()
    train, test, xquad = load_scifact("train"), load_scifact("test"), load_xquad()
    result: dict[str, Any] = {"depth": args.depth, "list_kinds": list(KINDS)}
    CACHE.mkdir(parents=True, exist_ok=True)
    previous = CACHE / "reranker_weights_previous.json"
    shutil.copyfile(DEFAULT_WEIGHTS, previous)
    target = DEFAULT_WEIGHTS if args.write_weights else CACHE / "reranker_weights.json"

    sets = {"test": test, "train": train}
    vecs = [
        embed_cached(real, [d.queries[q] for q in sorted(d.queries)], f"scifact_{n}_queries") for n, d in sets.items()
    ]
    texts = [d.queries[q] for d in sets.values() for q in sorted(d.queries)]
    embedder = PrecomputedEmbedder(real, texts, np.vstack(vecs))
    points, _ = scifact_points(test, corpus_vectors(test, real), sparse)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        index = build_engine(Path(tmp) / "scifact", points)
        try:
            searcher = searcher_for(index, embedder, sparse)
            kinds = {name: await record(searcher, train, args.depth, k, **kw) for name, (k, kw) in KINDS.items()}
            names, stages_names, text_only_names = FULL_FEATURES, STAGES_FEATURES, TEXT_ONLY_FEATURES
            if args.select:
                pool = list(TEXT_ONLY_FEATURES)
                names, result["selection_full"] = select(kinds, train.qrels, FEATURE_NAMES, args.l2 or 1e-3)
                text_only_names, result["selection_text_only"] = select(kinds, train.qrels, pool, args.l2 or 1e-3)
            if args.l2 is None:
                l2, result["l2_cv_ndcg@10"] = choose_l2(kinds, train.qrels, names)
            else:
                l2 = args.l2
            qids = sorted(train.queries)
            t0 = time.perf_counter()
            models = {
                "full": fit(kinds, qids, names, l2),
                "stages": fit(kinds, qids, stages_names, l2),
                "text_only": fit(kinds, qids, text_only_names, l2),
            }
            result["fit_s"] = round(time.perf_counter() - t0, 3)
            save_models(
                target,
                models,
                trained_on=(
                    "SciFact train qrels; the lists production reranks, from RetrievalService over the "
                    "embedded engine (all-MiniLM-L6-v2 bf16, engine BM25, the stored vectors for `prf`): DBSF "
                    f"top {args.depth} of top_k=10 and top_k=100 requests, and BM25-only and dense-only lists"
                ),
                script="benchmarks/train_reranker.py",
                l2=l2,
            )
            result["l2"] = l2
            result["weights"] = {
                k: dict(zip(m.names, m.weights.round(4).tolist(), strict=True)) for k, m in models.items()
            }
            result["scifact_train_cv_ndcg@10"] = {
                "as_fused": {k: round(ndcg10(reranked(None, e, qids), train.qrels), 4) for k, e in kinds.items()},
                "rerank": cross_validate(kinds, train.qrels, names, l2),
                "rerank_without_prf": cross_validate(kinds, train.qrels, stages_names, l2),
                "rerank_text_only": cross_validate(kinds, train.qrels, text_only_names, l2),
            }
            result["scifact_train_held_out_gain"] = held_out_gain(kinds, train.qrels, names, l2)
            result["scifact_test_top_k_10"] = await compare(searcher, test, target, previous)
        finally:
            index.close()

    if xquad is not None:
        qids = sorted(xquad.queries)
        xq_vecs = embed_cached(real, [xquad.queries[q] for q in qids], "xquad_test_queries")
        embedder = PrecomputedEmbedder(real, [xquad.queries[q] for q in qids], xq_vecs)
        doc_vecs = embed_cached(real, [d.full_text for d in xquad.corpus.values()], "xquad_docs")
        points, _ = scifact_points(xquad, doc_vecs, sparse)
        with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
            index = build_engine(Path(tmp) / "xquad", points)
            try:
                searcher = searcher_for(index, embedder, sparse)
                result["xquad_top_k_10"] = await compare(searcher, xquad, target, previous)
            finally:
                index.close()
    result["weights_file"] = str(target)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
