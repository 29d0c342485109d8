"""Retrieval evaluation: BEIR-compatible metrics and dataset loading."""

from retrieval.evaluation.beir import BeirDataset, BeirDocument, load_beir
from retrieval.evaluation.metrics import (
    evaluate_run,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

__all__ = [
    "BeirDataset",
    "BeirDocument",
    "evaluate_run",
    "hit_rate_at_k",
    "load_beir",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
]
