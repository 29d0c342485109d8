from __future__ import annotations

import asyncio

import pytest

from core.errors import InvalidInput
from core.models import Principal
from orchestration.answers import AnswerService
from orchestration.grounded import NOT_FOUND
from orchestration.providers.extractive import ExtractiveProvider
from orchestration.types import AnswerEvent

from .conftest import FakeRetriever, ScriptedProvider

pytestmark = pytest.mark.unit


def _collect(service: AnswerService, principal: Principal, question: str) -> list[AnswerEvent]:
    async def go() -> list[AnswerEvent]:
        return [e async for e in service.stream(principal, question)]

    return asyncio.run(go())


def test_grounded_answer_with_verified_citations(alice: Principal) -> None:
    retriever = FakeRetriever()
    service = AnswerService(retriever, ExtractiveProvider())
    result = asyncio.run(service.answer(alice, "How many days of paid annual leave do employees receive?"))
    assert not result.abstained
    assert "25 days" in result.answer
    assert result.citations and result.citations[0].n == 1
    assert result.citations[0].doc_id == "leave"
    assert result.citations[0].quote in retriever.chunks[0].text
    assert result.run_id
    assert retriever.calls[0][0] is alice  # principal passed through untouched
    body = result.model_dump()
    assert {"answer", "citations", "abstained", "run_id"} <= body.keys()
    assert {"n", "doc_id", "chunk_id", "title", "quote", "char_start", "char_end", "page"} <= body[
        "citations"
    ][0].keys()


def test_abstains_when_topic_absent(alice: Principal) -> None:
    service = AnswerService(FakeRetriever(), ExtractiveProvider())
    result = asyncio.run(service.answer(alice, "Who won the football world cup in 1954?"))
    assert result.abstained
    assert result.answer == NOT_FOUND
    assert result.citations == []


def test_abstains_without_calling_model_when_nothing_visible(alice: Principal) -> None:
    model = ScriptedProvider("should not be called [1]")
    service = AnswerService(FakeRetriever(allowed_docs=set()), model)
    result = asyncio.run(service.answer(alice, "How many days of leave?"))
    assert result.abstained and model.requests == []


def test_citations_only_for_returned_chunks(alice: Principal) -> None:
    # the model invents [4] and [9]; only one chunk was returned to this principal
    model = ScriptedProvider(
        "Employees receive 25 days of paid annual leave per calendar year [1][4]. More [9]."
    )
    service = AnswerService(FakeRetriever(allowed_docs={"leave"}), model)
    result = asyncio.run(service.answer(alice, "How much leave?"))
    assert not result.abstained
    assert result.answer == "Employees receive 25 days of paid annual leave per calendar year [1]. More."
    assert [c.doc_id for c in result.citations] == ["leave"]


def test_model_abstention_and_unsupported_answers_become_not_found(alice: Principal) -> None:
    for text in ("INSUFFICIENT_EVIDENCE", "The moon is cheese [1].", "No markers at all."):
        result = asyncio.run(
            AnswerService(FakeRetriever(), ScriptedProvider(text)).answer(alice, "leave days?")
        )
        assert result.abstained, text
        assert result.answer == NOT_FOUND


def test_stream_tokens_then_final(alice: Principal) -> None:
    model = ScriptedProvider("Receipts are required for every expense above 20 euros [2][7].")
    retriever = FakeRetriever(keep_order=True)  # expenses is the second chunk
    events = _collect(AnswerService(retriever, model), alice, "Are receipts required for expense claims?")
    tokens = "".join(e.text or "" for e in events if e.type == "token")
    final = events[-1]
    assert final.type == "final" and final.result is not None
    assert tokens == final.result.answer == "Receipts are required for every expense above 20 euros [1]."
    assert final.result.citations[0].doc_id == "expenses"


def test_stream_abstention_final_event(alice: Principal) -> None:
    events = _collect(
        AnswerService(FakeRetriever(), ExtractiveProvider()), alice, "Who painted the Mona Lisa?"
    )
    assert [e.type for e in events] == ["final"]
    assert events[0].result is not None and events[0].result.abstained


def test_invalid_input_is_rejected_before_streaming(alice: Principal) -> None:
    service = AnswerService(FakeRetriever(), ExtractiveProvider())
    with pytest.raises(InvalidInput):
        service.stream(alice, "   ")
    with pytest.raises(InvalidInput, match="top_k"):
        asyncio.run(service.answer(alice, "leave?", top_k=0))
