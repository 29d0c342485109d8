"""Fusion, dedupe and context packing: the pure functions behind the merged result list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.models import RetrievedChunk
from retrieval.context import build_context
from retrieval.dedupe import drop_near_duplicates, mmr
from retrieval.fusion import Hit, dbsf, rrf

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


def hit(cid: str, score: float = 0.0, **scores: float) -> Hit:
    return Hit(cid, score, dict(scores))


def test_rrf_matches_hand_computed_scores() -> None:
    lists = {"dense": [hit("a"), hit("b"), hit("c")], "sparse": [hit("c"), hit("a")]}
    fused = rrf(lists, k=60)
    got = {f.hit.chunk_id: f.hit.score for f in fused}
    assert got["a"] == pytest.approx(1 / 60 + 1 / 61)
    assert got["c"] == pytest.approx(1 / 62 + 1 / 60)
    assert got["b"] == pytest.approx(1 / 61)
    assert [f.hit.chunk_id for f in fused] == ["a", "c", "b"]


def test_weighted_rrf_scales_rank_like_the_engine() -> None:
    # engine formula (checked against qdrant-edge): 1 / (k - 1 + rank / w)
    lists = {"dense": [hit("a"), hit("b")], "sparse": [hit("b"), hit("a")]}
    fused = rrf(lists, k=10, weights={"dense": 1.0, "sparse": 0.5})
    got = {f.hit.chunk_id: f.hit.score for f in fused}
    assert got["a"] == pytest.approx(1 / 10 + 1 / 13)
    assert got["b"] == pytest.approx(1 / 11 + 1 / 11)
    only_dense = rrf(lists, k=10, weights={"dense": 1.0, "sparse": 0.0})
    assert [f.hit.chunk_id for f in only_dense] == ["a", "b"]


def test_fusion_records_provenance_and_keeps_every_stage_score_without_mutating() -> None:
    d = [hit("a", 0.9, dense=0.9), hit("b", 0.8, dense=0.8)]
    s = [hit("b", 12.0, sparse=12.0)]
    fused = rrf({"dense": d, "sparse": s}, key="hybrid")
    b = next(f for f in fused if f.hit.chunk_id == "b")
    assert [(c.source, c.rank, c.score) for c in b.contributions] == [("dense", 2, 0.8), ("sparse", 1, 12.0)]
    assert b.hit.scores["dense"] == 0.8 and b.hit.scores["sparse"] == 12.0
    assert b.hit.scores["hybrid"] == b.hit.score
    assert d[1].score == 0.8 and "hybrid" not in d[1].scores  # inputs untouched


def test_dbsf_keeps_score_gaps_that_rrf_loses() -> None:
    # "a" wins dense by a mile and is third in sparse by a hair: DBSF ranks it first, RRF does not
    dense = [hit("a", 0.95), hit("b", 0.30), hit("c", 0.29), hit("d", 0.28), hit("e", 0.27)]
    sparse = [hit("b", 10.0), hit("c", 9.9), hit("a", 9.8)]
    assert dbsf({"d": dense, "s": sparse})[0].hit.chunk_id == "a"
    assert rrf({"d": dense, "s": sparse})[0].hit.chunk_id == "b"
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


def test_dedupe_draws_no_more_from_a_lazy_ranking_than_it_keeps() -> None:
    drawn: list[str] = []

    def lazy() -> Iterator[RetrievedChunk]:  # the service reads chunks from the index this way
        for cid, text in [("a", "alpha beta gamma"), ("b", "alpha beta gamma"), ("c", "delta"), ("d", "eps")]:
            drawn.append(cid)
            yield chunk(cid, text=text)

    kept, dropped = drop_near_duplicates(lazy(), threshold=0.8, limit=2)
    assert [c.chunk_id for c in kept] == ["a", "c"] and [d.chunk_id for d in dropped] == ["b"]
    assert drawn == ["a", "b", "c"]
    assert drop_near_duplicates(lazy(), limit=0) == ([], []) and drawn == ["a", "b", "c"]
