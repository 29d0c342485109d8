from __future__ import annotations

import pytest

from orchestration.citations import (
    MarkerRewriter,
    build_citations,
    citation_coverage,
    claims_by_marker,
    ground,
    parse_markers,
    renumber,
    verify_citations,
)

from .conftest import corpus, make_chunk

pytestmark = pytest.mark.unit


def test_parse_markers_variants() -> None:
    got = [m.numbers for m in parse_markers("a [1] b [2, 3] c [^4] d [x] [12,13]")]
    assert got == [(1,), (2, 3), (4,), (12, 13)]


def test_renumber_dense_in_first_appearance_order_and_drops_unresolvable() -> None:
    text, mapping, dropped = renumber("A [3]. B [5]. C [1][3]. D [2, 9].", n_sources=4)
    assert text == "A [1]. B. C [2][1]. D [3]."
    assert mapping == {3: 1, 1: 2, 2: 3}
    assert dropped == 2


def test_rewriter_streaming_equals_batch_for_any_split() -> None:
    raw = "Leave is 25 days [2]. Bad ref [7] here. Pair [2, 1]. Bracket [note] kept [1"
    expected, _, _ = renumber(raw, 3)
    for size in (1, 2, 3, 5, 8):
        rw = MarkerRewriter(3)
        out = "".join(rw.feed(raw[i : i + size]) for i in range(0, len(raw), size)) + rw.flush()
        assert out == expected
    assert expected == "Leave is 25 days [1]. Bad ref here. Pair [1][2]. Bracket [note] kept [1"


def test_citations_quote_verbatim_with_document_offsets() -> None:
    chunks = corpus()
    text = (
        "Receipts are required for every expense above 20 euros. [2] Passwords are rotated every 90 days. [3]"
    )
    g = ground(text, chunks)
    assert (
        g.answer == "Receipts are required for every expense above 20 euros. [1] "
        "Passwords are rotated every 90 days. [2]"
    )
    assert [c.n for c in g.citations] == [1, 2]
    c1 = g.citations[0]
    assert (c1.doc_id, c1.title) == ("expenses", "Expense policy")
    assert c1.quote == "Receipts are required for every expense above 20 euros."
    local = chunks[1].text.index(c1.quote)
    assert (c1.char_start, c1.char_end) == (100 + local, 100 + local + len(c1.quote))
    assert verify_citations(g.citations, chunks) == []
    assert g.coverage == 1.0 and g.groundedness == 1.0


def test_paraphrased_claim_gets_best_matching_sentence_as_quote() -> None:
    chunks = corpus()
    g = ground("You can carry over at most five unused leave days [1].", chunks)
    assert g.citations[0].quote == "Unused leave of up to five days may be carried over to the next year."
    assert g.citations[0].supported


def test_unsupported_claim_is_flagged() -> None:
    g = ground("The moon is made of cheese [3].", corpus())
    assert not g.citations[0].supported
    assert g.groundedness == 0.0


def test_verify_detects_tampered_quotes_and_foreign_chunks() -> None:
    chunks = corpus()
    g = ground("Passwords are rotated every 90 days. [3]", chunks)
    bad = g.citations[0].model_copy(update={"quote": "Passwords are rotated every 30 days."})
    assert verify_citations([bad], chunks)
    foreign = g.citations[0].model_copy(update={"chunk_id": "other"})
    assert "not retrieved" in verify_citations([foreign], chunks)[0]


def test_claims_attach_to_the_last_sentence_before_the_marker() -> None:
    claims = claims_by_marker("Intro sentence. The fee is 10 euros [1][2]. Another. It is due monthly [3].")
    assert claims == [("The fee is 10 euros", (1, 2)), ("It is due monthly", (3,))]


def test_multiple_quotes_from_one_source() -> None:
    chunk = make_chunk("d", "Alpha is first. Beta is second. Gamma is third.")
    g = ground("Alpha is first. [1] Gamma is third. [1]", [chunk])
    assert len(g.citations) == 1
    assert [q.text for q in g.citations[0].quotes] == ["Alpha is first.", "Gamma is third."]


def test_coverage_counts_sentences_with_markers() -> None:
    assert citation_coverage("One [1]. Two. Three [2].") == pytest.approx(2 / 3)
    assert citation_coverage("") == 0.0


def test_build_citations_ignores_unmapped_numbers() -> None:
    assert build_citations("x [1]", corpus(), mapping={}) == []
