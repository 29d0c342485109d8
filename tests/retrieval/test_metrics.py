"""Metrics checked against values worked out by hand from the published definitions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from core.errors import InvalidInput, NotFound
from retrieval.evaluation import (
    evaluate_run,
    hit_rate_at_k,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

pytestmark = pytest.mark.unit

L2 = math.log2


def test_ndcg_binary_by_hand() -> None:
    qrels = {"a": 1, "b": 1}
    # relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3)
    expected = (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3))
    assert ndcg_at_k(["x", "a", "y", "b"], qrels, 10) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b", "x"], qrels, 10) == pytest.approx(1.0)


def test_ndcg_graded_gain_is_linear() -> None:
    qrels = {"a": 2, "b": 1}
    # b first then a: DCG = 1 + 2/log2(3); ideal = 2 + 1/log2(3)
    expected = (1 + 2 / L2(3)) / (2 + 1 / L2(3))
    assert ndcg_at_k(["b", "a"], qrels, 10) == pytest.approx(expected)


def test_ndcg_ideal_comes_from_qrels_and_is_cut_at_k() -> None:
    qrels = {"a": 1, "b": 1, "c": 1}
    # one relevant at rank 1 of k=2: DCG = 1; ideal over top-2 of qrels = 1 + 1/log2(3)
    assert ndcg_at_k(["a", "x", "b"], qrels, 2) == pytest.approx(1 / (1 + 1 / L2(3)))


def test_duplicates_count_once_and_negative_grades_count_zero() -> None:
    assert ndcg_at_k(["a", "a", "a"], {"a": 1, "b": 1}, 3) == pytest.approx(1 / (1 + 1 / L2(3)))
    assert ndcg_at_k(["n", "a"], {"n": -1, "a": 1}, 10) == pytest.approx(1 / L2(3))
    assert ndcg_at_k(["a"], {"n": -1}, 10) == 0.0


def test_recall_precision_mrr_hit_rate_by_hand() -> None:
    ranked = ["x", "a", "y", "b", "z"]
    qrels = {"a": 1, "b": 2, "c": 1, "d": 0}
    assert recall_at_k(ranked, qrels, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, qrels, 5) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, qrels, 4) == pytest.approx(2 / 4)
    assert precision_at_k(["a"], qrels, 10) == pytest.approx(1 / 10)  # divides by k, as trec_eval
    assert mrr_at_k(ranked, qrels, 10) == pytest.approx(1 / 2)
    assert mrr_at_k(ranked, qrels, 1) == 0.0
    assert hit_rate_at_k(ranked, qrels, 1) == 0.0
    assert hit_rate_at_k(ranked, qrels, 2) == 1.0


def test_bad_k_is_refused() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        ndcg_at_k(["a"], {"a": 1}, 0)


def test_evaluate_run_means_over_judged_queries_and_scores_missing_runs_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}  # q3 has nothing relevant: skipped
    run = {"q1": ["a", "x"], "q3": ["c"], "unjudged": ["z"]}
    result = evaluate_run(run, qrels, ks=(1, 10))
    assert result["queries"] == 2
    assert result["ndcg@10"] == pytest.approx(0.5)
    assert result["mrr@1"] == pytest.approx(0.5)
    assert result["recall@10"] == pytest.approx(0.5)
    assert result["precision@1"] == pytest.approx(0.5)
    assert result["hit_rate@10"] == pytest.approx(0.5)


def test_evaluate_run_rejects_unknown_metric() -> None:
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_run({}, {}, metrics=("map",))


def _write_beir(root: Path, qrels_lines: str) -> None:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "body"}\n{"_id": "d2", "text": "other"}\n'
    )
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "what"}\n{"_id": "q2", "text": "x"}\n')
    (root / "qrels" / "test.tsv").write_text(qrels_lines)


def test_load_beir_reads_the_layout(tmp_path: Path) -> None:
    _write_beir(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    ds = load_beir(tmp_path)
    assert ds.queries == {"q1": "what"}
    assert ds.qrels == {"q1": {"d1": 1, "d2": 0}}
    assert ds.corpus["d1"].full_text == "T body"
    assert ds.corpus["d2"].title == ""


def test_load_beir_names_the_missing_file(tmp_path: Path) -> None:
    _write_beir(tmp_path, "q1\td1\t1\n")
    with pytest.raises(NotFound, match=r"train\.tsv is missing"):
        load_beir(tmp_path, split="train")
    with pytest.raises(NotFound, match="corpus.jsonl"):
        load_beir(tmp_path / "nowhere")


def test_load_beir_reports_malformed_lines(tmp_path: Path) -> None:
    _write_beir(tmp_path, "q1\td1\n")
    with pytest.raises(InvalidInput, match=r"test\.tsv:1 needs 3"):
        load_beir(tmp_path)
