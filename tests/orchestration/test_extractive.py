from __future__ import annotations

import asyncio

import pytest

from core.llm import INSUFFICIENT_EVIDENCE, CompletionRequest
from orchestration.citations import parse_markers
from orchestration.providers.extractive import ExtractiveProvider

from .conftest import corpus, make_chunk

pytestmark = pytest.mark.unit


def _req(question: str) -> CompletionRequest:
    return CompletionRequest(query=question, context=corpus())


def test_answer_is_verbatim_sentences_with_source_markers() -> None:
    out = asyncio.run(
        ExtractiveProvider().complete(_req("How many days of paid annual leave do employees get?"))
    )
    assert out.finish_reason == "stop"
    assert out.text.startswith("Employees receive 25 days of paid annual leave per calendar year. [1]")
    chunks = corpus()
    for m in parse_markers(out.text):
        assert m.numbers[0] <= len(chunks)
    # every sentence before a marker is copied verbatim from the chunk the marker names
    pieces = [p.strip() for p in out.text.replace("]", "]\x00").split("\x00") if p.strip()]
    for piece in pieces:
        sentence, _, n = piece.rpartition(" [")
        assert sentence in chunks[int(n.rstrip("]")) - 1].text


def test_marker_points_at_the_right_source() -> None:
    out = asyncio.run(ExtractiveProvider().complete(_req("When are travel expenses reimbursed?")))
    assert "Travel expenses are reimbursed within 30 days of submission. [2]" in out.text


def test_abstains_when_the_topic_is_absent() -> None:
    out = asyncio.run(ExtractiveProvider().complete(_req("What is the boiling point of mercury on Venus?")))
    assert out.text == ""
    assert out.finish_reason == INSUFFICIENT_EVIDENCE
    assert out.abstained


def test_question_taken_from_last_user_message_and_deterministic() -> None:
    from core.llm import ChatMessage

    req = CompletionRequest(
        messages=[
            ChatMessage(role="system", content="x"),
            ChatMessage(role="user", content="How often are passwords rotated?"),
        ],
        context=corpus(),
    )
    p = ExtractiveProvider()
    first = asyncio.run(p.complete(req))
    assert "Passwords are rotated every 90 days. [3]" in first.text
    assert asyncio.run(p.complete(req)) == first


def test_stream_concatenates_to_complete_text() -> None:
    p = ExtractiveProvider()
    req = _req("Are receipts required for expenses?")

    async def collect() -> str:
        return "".join([d async for d in p.stream(req)])

    assert asyncio.run(collect()) == asyncio.run(p.complete(req)).text


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="min_coverage"):
        ExtractiveProvider(min_coverage=0)


def test_single_shared_word_is_not_evidence() -> None:
    req = CompletionRequest(
        query="How tall is Mount Kilimanjaro?",
        context=[make_chunk("road", "Kearney Boulevard is lined with tall palm trees. It is a rural road.")],
    )
    assert asyncio.run(ExtractiveProvider().complete(req)).abstained


def test_answer_includes_the_sentence_after_the_best_match() -> None:
    text = "The committee elected a new chair in 2019. She is Jane Doe, a physicist. The budget grew."
    req = CompletionRequest(
        query="Who did the committee elect as new chair?", context=[make_chunk("c", text)]
    )
    out = asyncio.run(ExtractiveProvider().complete(req)).text
    assert out == "The committee elected a new chair in 2019. [1] She is Jane Doe, a physicist. [1]"
