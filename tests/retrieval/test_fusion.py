"""Fusion, dedupe and context packing: the pure functions behind the merged result list."""

from __future__ import annotations

import pytest

from core.models import RetrievedChunk
from retrieval.context import build_context
from retrieval.dedupe import drop_near_duplicates, mmr
from retrieval.fusion import dbsf, rrf

pytestmark = pytest.mark.unit


def chunk(cid: str, score: float = 0.0, text: str | None = None, **scores: float) -> RetrievedChunk:
    body = text if text is not None else f"text of {cid}"
    return RetrievedChunk(
        doc_id=cid,
        chunk_id=cid,
        version=1,
        chunk_index=0,
        text=body,
        char_start=0,
        char_end=len(body),
        score=score,
        scores=dict(scores),
    )


def test_rrf_matches_hand_computed_scores() -> None:
    lists = {"dense": [chunk("a"), chunk("b"), chunk("c")], "sparse": [chunk("c"), chunk("a")]}
    fused = rrf(lists, k=60)
    got = {f.chunk.chunk_id: f.chunk.score for f in fused}
    assert got["a"] == pytest.approx(1 / 60 + 1 / 61)
    assert got["c"] == pytest.approx(1 / 62 + 1 / 60)
    assert got["b"] == pytest.approx(1 / 61)
    assert [f.chunk.chunk_id for f in fused] == ["a", "c", "b"]


def test_weighted_rrf_scales_rank_like_the_engine() -> None:
    # engine formula (checked against qdrant-edge): 1 / (k - 1 + rank / w)
    lists = {"dense": [chunk("a"), chunk("b")], "sparse": [chunk("b"), chunk("a")]}
    fused = rrf(lists, k=10, weights={"dense": 1.0, "sparse": 0.5})
    got = {f.chunk.chunk_id: f.chunk.score for f in fused}
    assert got["a"] == pytest.approx(1 / 10 + 1 / 13)
    assert got["b"] == pytest.approx(1 / 11 + 1 / 11)
    only_dense = rrf(lists, k=10, weights={"dense": 1.0, "sparse": 0.0})
    assert [f.chunk.chunk_id for f in only_dense] == ["a", "b"]


def test_fusion_records_provenance_and_keeps_every_stage_score_without_mutating() -> None:
    d = [chunk("a", 0.9, dense=0.9), chunk("b", 0.8, dense=0.8)]
    s = [chunk("b", 12.0, sparse=12.0)]
    fused = rrf({"dense": d, "sparse": s}, key="hybrid")
    b = next(f for f in fused if f.chunk.chunk_id == "b")
    assert [(c.source, c.rank, c.score) for c in b.contributions] == [("dense", 2, 0.8), ("sparse", 1, 12.0)]
    assert b.chunk.scores["dense"] == 0.8 and b.chunk.scores["sparse"] == 12.0
    assert b.chunk.scores["hybrid"] == b.chunk.score
    assert d[1].score == 0.8 and "hybrid" not in d[1].scores  # inputs untouched


def test_dbsf_keeps_score_gaps_that_rrf_loses() -> None:
    # "a" wins dense by a mile and is third in sparse by a hair: DBSF ranks it first, RRF does not
    dense = [chunk("a", 0.95), chunk("b", 0.30), chunk("c", 0.29), chunk("d", 0.28), chunk("e", 0.27)]
    sparse = [chunk("b", 10.0), chunk("c", 9.9), chunk("a", 9.8)]
    assert dbsf({"d": dense, "s": sparse})[0].chunk.chunk_id == "a"
    assert rrf({"d": dense, "s": sparse})[0].chunk.chunk_id == "b"
    with pytest.raises(ValueError, match="weights"):
        rrf({"d": dense}, weights={"x": 1.0})


def test_near_duplicates_are_dropped_and_reported() -> None:
    base = "Refunds are issued to the original payment method within five business days of approval"
    ranked = [chunk("a", text=base), chunk("b", text=base + " always"), chunk("c", text="VPN setup guide")]
    kept, dropped = drop_near_duplicates(ranked, threshold=0.8)
    assert [c.chunk_id for c in kept] == ["a", "c"]
    assert dropped[0].chunk_id == "b" and dropped[0].kept_chunk_id == "a" and dropped[0].similarity >= 0.8
    kept, _ = drop_near_duplicates(ranked, threshold=0.8, limit=1)
    assert [c.chunk_id for c in kept] == ["a"]


def test_mmr_prefers_a_new_source_over_a_copy() -> None:
    base = "the quarterly revenue report for the european market grew by ten percent"
    ranked = [
        chunk("a", text=base),
        chunk("b", text=base + " again"),
        chunk("c", text="vacation policy text"),
    ]
    assert [c.chunk_id for c in mmr(ranked, k=2, lambda_=0.5)] == ["a", "c"]
    assert [c.chunk_id for c in mmr(ranked, k=3, lambda_=1.0)] == ["a", "b", "c"]


def test_context_respects_the_token_budget_and_numbers_citations() -> None:
    ranked = [chunk("a", text="one two three"), chunk("b", text="x " * 50), chunk("c", text="four five")]
    window = build_context(ranked, budget_tokens=12, count=lambda t: len(t.split()))
    assert [(it.n, it.chunk.chunk_id) for it in window.items] == [(1, "a"), (2, "c")]
    assert window.tokens <= 12 and window.skipped == ("b",)
    assert window.text.startswith("[1] a\none two three") and "[2] c\nfour five" in window.text
