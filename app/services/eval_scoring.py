"""Pure scoring for evaluation runs: per-query metrics, run summaries, comparisons, regressions.

Everything here is a function of plain data (ranked ids, qrels, stored summaries), so the numbers
an evaluation job stores are exactly what `retrieval.evaluation.metrics` computes, and a test can
re-derive any stored value from the stored rankings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from retrieval.evaluation.metrics import (
    evaluate_run,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

METRICS = ("ndcg", "mrr", "recall", "precision", "hit_rate")
_FUNCS = {
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "hit_rate": hit_rate_at_k,
}


def score_query(ranked: Sequence[str], qrels: Mapping[str, int], ks: Sequence[int]) -> dict[str, float]:
    return {f"{m}@{k}": _FUNCS[m](ranked, qrels, k) for m in METRICS for k in ks}


def summarize(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    ks: Sequence[int],
    latencies_ms: Sequence[float] = (),
) -> dict[str, float]:
    """Means over the judged queries (`evaluate_run`), plus latency percentiles."""
    summary = evaluate_run(run, qrels, ks=ks, metrics=METRICS)
    if latencies_ms:
        ordered = sorted(latencies_ms)
        summary["latency_p50_ms"] = round(_percentile(ordered, 50), 3)
        summary["latency_p95_ms"] = round(_percentile(ordered, 95), 3)
    return summary


def _percentile(ordered: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def quality_keys(summary: Mapping[str, float]) -> list[str]:
    """The metric@k keys of a summary (not `queries` or latencies)."""
    return [k for k in summary if "@" in k]


def find_regressions(
    baseline: Mapping[str, Mapping[str, float]],
    current: Mapping[str, Mapping[str, float]],
    threshold: float,
) -> list[dict[str, Any]]:
    """Every (config, metric) that dropped by more than `threshold` (absolute) from the baseline.

    Only configurations and metrics present in both runs are compared: a run that tries a new
    configuration has nothing to regress from.
    """
    out: list[dict[str, Any]] = []
    for config in sorted(set(baseline) & set(current)):
        for key in quality_keys(baseline[config]):
            if key not in current[config]:
                continue
            before, after = baseline[config][key], current[config][key]
            if before - after > threshold + 1e-12:
                out.append(
                    {"config": config, "metric": key, "baseline": before, "value": after, "delta": after - before}
                )
    return out


def compare_summaries(
    a: Mapping[str, Mapping[str, float]], b: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, dict[str, float]]]:
    """config -> metric -> {a, b, delta (b - a)} for what both runs measured."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for config in sorted(set(a) & set(b)):
        keys = [k for k in quality_keys(a[config]) if k in b[config]]
        out[config] = {k: {"a": a[config][k], "b": b[config][k], "delta": b[config][k] - a[config][k]} for k in keys}
    return out


def per_query_deltas(
    a: Mapping[str, Mapping[str, float]], b: Mapping[str, Mapping[str, float]], metric: str
) -> list[dict[str, Any]]:
    """Queries whose `metric` changed between two runs of one configuration, largest change first."""
    rows: list[dict[str, Any]] = [
        {"query_id": qid, "a": a[qid].get(metric, 0.0), "b": b[qid].get(metric, 0.0)}
        for qid in sorted(set(a) & set(b))
    ]
    for r in rows:
        r["delta"] = r["b"] - r["a"]
    return sorted((r for r in rows if abs(r["delta"]) > 1e-12), key=lambda r: (-abs(r["delta"]), r["query_id"]))


def primary_metric(ks: Sequence[int]) -> str:
    """nDCG@10 when measured (the number BEIR results are quoted in), else nDCG at the largest k."""
    return "ndcg@10" if 10 in ks else f"ndcg@{max(ks)}"
