"""Ranking metrics as BEIR / pytrec_eval define them, as pure functions.

They live here, not in a benchmark script, so that evaluation jobs, benchmarks and tests all score
a run the same way. Conventions (each chosen to match the published numbers we compare against):

- graded gains are linear (gain = rel) with discount log2(i + 1), i counting from 1; the ideal DCG
  is built from the qrels, not from what was retrieved;
- a document is relevant when its grade is > 0; negative grades count as 0;
- a document id repeated in a ranking counts once, at its first position;
- precision divides by k even when fewer than k ids were returned (trec_eval), and recall divides
  by every relevant document, not by min(k, R) (BEIR).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Qrels = Mapping[str, int]

METRICS = ("ndcg", "recall", "mrr", "precision", "hit_rate")


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _top_k(ranked_ids: Sequence[str], k: int) -> list[str]:
    """First k distinct ids: a duplicate must not earn its gain twice."""
    seen: set[str] = set()
    out: list[str] = []
    for doc_id in ranked_ids:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        out.append(doc_id)
        if len(out) == k:
            break
    return out


def _gain(qrels: Qrels, doc_id: str) -> int:
    return max(qrels.get(doc_id, 0), 0)


def _relevant(qrels: Qrels) -> set[str]:
    return {d for d, rel in qrels.items() if rel > 0}


def dcg(gains: Iterable[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranked_ids: Sequence[str], qrels: Qrels, k: int) -> float:
    _check_k(k)
    ideal = dcg(sorted((g for g in (max(r, 0) for r in qrels.values()) if g > 0), reverse=True)[:k])
    if ideal == 0.0:
        return 0.0
    return dcg(_gain(qrels, d) for d in _top_k(ranked_ids, k)) / ideal


def recall_at_k(ranked_ids: Sequence[str], qrels: Qrels, k: int) -> float:
    _check_k(k)
    relevant = _relevant(qrels)
    if not relevant:
        return 0.0
    return len(relevant.intersection(_top_k(ranked_ids, k))) / len(relevant)


def precision_at_k(ranked_ids: Sequence[str], qrels: Qrels, k: int) -> float:
    _check_k(k)
    relevant = _relevant(qrels)
    return len(relevant.intersection(_top_k(ranked_ids, k))) / k


def mrr_at_k(ranked_ids: Sequence[str], qrels: Qrels, k: int) -> float:
    _check_k(k)
    for rank, doc_id in enumerate(_top_k(ranked_ids, k), start=1):
        if _gain(qrels, doc_id) > 0:
            return 1.0 / rank
    return 0.0


def hit_rate_at_k(ranked_ids: Sequence[str], qrels: Qrels, k: int) -> float:
    _check_k(k)
    return 1.0 if mrr_at_k(ranked_ids, qrels, k) > 0 else 0.0


_FUNCS = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "mrr": mrr_at_k,
    "precision": precision_at_k,
    "hit_rate": hit_rate_at_k,
}


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Qrels],
    ks: Iterable[int] = (1, 10, 100),
    metrics: Iterable[str] = METRICS,
) -> dict[str, float]:
    """Mean of each metric@k over the queries that have at least one relevant document.

    A query with qrels but no entry in `run` scores 0 rather than being dropped, so a system
    cannot look better by answering fewer queries. Keys are `"ndcg@10"`, `"recall@100"`, ...,
    plus `"queries"`: how many queries were averaged.
    """
    ks = sorted(set(ks))
    for k in ks:
        _check_k(k)
    names = list(metrics)
    unknown = [m for m in names if m not in _FUNCS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(_FUNCS)}")
    judged = [qid for qid, q in qrels.items() if _relevant(q)]
    totals = {f"{m}@{k}": 0.0 for m in names for k in ks}
    for qid in judged:
        ranked = run.get(qid, ())
        for m in names:
            for k in ks:
                totals[f"{m}@{k}"] += _FUNCS[m](ranked, qrels[qid], k)
    n = len(judged)
    result = {key: (value / n if n else 0.0) for key, value in totals.items()}
    result["queries"] = float(n)
    return result
