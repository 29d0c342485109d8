from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import Principal, RetrievedChunk, Role
from orchestration.answers import AnswerService
from orchestration.grounded import NOT_FOUND
from orchestration.providers.extractive import ExtractiveProvider
from orchestration.workflows.engine import ReviewDecision

from .conftest import FakeRetriever, corpus, make_chunk
from .test_engine import sql_store

pytestmark = pytest.mark.integration

AGENT = Principal(tenant_id="acme", user="agent", role=Role.editor)
READER = Principal(tenant_id="acme", user="rita")
OTHER_TENANT = Principal(tenant_id="globex", user="agent", role=Role.admin)


def service(tmp_path: Path) -> AnswerService:
    return AnswerService(FakeRetriever(), ExtractiveProvider(), sql_store(tmp_path))


def test_grounded_qa_run_is_recorded(tmp_path: Path) -> None:
    svc = service(tmp_path)
    result = asyncio.run(svc.answer(AGENT, "How often are passwords rotated?"))
    assert result.status == "succeeded" and not result.abstained
    assert "Passwords are rotated every 90 days. [1]" in result.answer
    assert (result.provider, result.citation_coverage, result.groundedness) == ("local", 1.0, 1.0)
    view = svc.engine.get_run(result.run_id, AGENT)
    assert [(e.step_id, e.kind) for e in view.events] == [
        ("gather", "completed"),
        ("generate", "completed"),
        ("verify", "completed"),
    ]
    assert view.run.output is not None and view.run.output["passed"] is True
    with pytest.raises(NotFound):
        svc.engine.get_run(result.run_id, OTHER_TENANT)


def test_support_assistant_gathers_the_customers_history_as_analysis_sources(tmp_path: Path) -> None:
    tickets = [
        make_chunk("t-17", "Ticket 17: the customer asked to carry over unused leave days last year.",
                   title="Ticket 17"),
    ]
    retriever = FakeRetriever(chunks=[*corpus(), *tickets])
    svc = AnswerService(retriever, ExtractiveProvider(), sql_store(tmp_path))
    result = asyncio.run(
        svc.answer(AGENT, "How many days of unused leave can be carried over?", workflow="support_assistant",
                   inputs={"customer_id": "c42"})
    )
    assert result.status == "succeeded" and retriever.params == [{}, {"customer_id": "c42"}]
    events = {e.step_id: e for e in svc.engine.store.events(result.run_id) if e.kind == "completed"}
    assert events["history"].output is not None and events["history"].output["count"] > 0
    analysis = events["analyze"].output or {}
    sources = [c["doc_id"] for c in analysis.get("citations", [])]
    assert analysis.get("answer") and set(sources) <= {"leave", "t-17", "expenses", "security"}
    run = svc.engine.get_run(result.run_id, AGENT).run
    assert run.version == 2


def test_support_assistant_without_a_customer_history_gatherer_still_answers(tmp_path: Path) -> None:
    class NoHistoryGatherer(FakeRetriever):
        async def __call__(self, principal: Principal, query: str, **kw: Any) -> list[RetrievedChunk]:
            if kw.get("gatherers") == ["customer_history"]:
                raise InvalidInput("unknown gatherer 'customer_history'")  # an operator's own gatherers file
            return await super().__call__(principal, query, **kw)

    svc = AnswerService(NoHistoryGatherer(), ExtractiveProvider(), sql_store(tmp_path))
    result = asyncio.run(
        svc.answer(AGENT, "How many days of paid annual leave do employees receive?", workflow="support_assistant",
                   inputs={"customer_id": "c42"})
    )
    assert result.status == "succeeded" and "25 days" in result.answer
    events = {e.step_id: e for e in svc.engine.store.events(result.run_id) if e.kind == "completed"}
    assert events["history"].output == {"query": "", "count": 0, "chunks": [], "fallback": True}


def test_support_assistant_confident_draft_needs_no_review(tmp_path: Path) -> None:
    svc = service(tmp_path)
    result = asyncio.run(
        svc.answer(
            AGENT,
            "How many days of paid annual leave do employees receive?",
            workflow="support_assistant",
            inputs={"history": "Asked about holidays in March."},
        )
    )
    assert result.status == "succeeded"
    assert "25 days" in result.answer and result.citations[0].doc_id == "leave"
    skipped = [e.step_id for e in svc.engine.store.events(result.run_id) if e.kind == "skipped"]
    assert skipped == ["history", "human"]  # no customer_id: no customer history to gather


def _paused(svc: AnswerService) -> str:
    result = asyncio.run(
        svc.answer(AGENT, "Is there a dress code for the office?", workflow="support_assistant")
    )
    assert result.status == "awaiting_review"
    return result.run_id


def test_low_confidence_draft_waits_for_review_then_edit(tmp_path: Path) -> None:
    svc = service(tmp_path)
    run_id = _paused(svc)
    with pytest.raises(NotFound):  # another user's run (its events hold that user's chunks)
        asyncio.run(svc.engine.review(run_id, READER, ReviewDecision(action="approve")))
    edited = "There is no dress code. Report phishing attempts to the security team immediately [3]."
    run = asyncio.run(svc.engine.review(run_id, AGENT, ReviewDecision(action="edit", text=edited)))
    assert run.status == "succeeded"
    result = svc.result_of(run)
    assert result.answer.endswith("security team immediately [1].")
    assert result.citations[0].doc_id == "security" and not result.abstained
    with pytest.raises(Conflict):
        asyncio.run(svc.engine.review(run_id, AGENT, ReviewDecision(action="approve")))


def test_review_survives_a_restart_and_reject_is_recorded(tmp_path: Path) -> None:
    run_id = _paused(service(tmp_path))
    restarted = service(tmp_path)  # new process, same database
    run = asyncio.run(
        restarted.engine.review(run_id, AGENT, ReviewDecision(action="reject", comment="off tone"))
    )
    assert run.status == "rejected" and run.reason == "rejected by agent: off tone"
    result = restarted.result_of(run)
    assert result.abstained and result.answer == NOT_FOUND


def test_admin_approves_and_the_draft_is_kept(tmp_path: Path) -> None:
    svc = service(tmp_path)
    run_id = _paused(svc)
    admin = Principal(tenant_id="acme", user="boss", role=Role.admin)
    run = asyncio.run(svc.engine.review(run_id, admin, ReviewDecision(action="approve")))
    assert run.status == "succeeded"
    assert run.output is not None and run.output["review"]["reviewer"] == "boss"


def test_readers_cannot_review_even_their_own_runs(tmp_path: Path) -> None:
    svc = service(tmp_path)
    result = asyncio.run(
        svc.answer(READER, "Is there a dress code for the office?", workflow="support_assistant")
    )
    assert svc.engine.get_run(result.run_id, READER).run.status == "awaiting_review"
    with pytest.raises(PermissionDenied):
        asyncio.run(svc.engine.review(result.run_id, READER, ReviewDecision(action="approve")))


def test_stream_non_streaming_workflow_sends_final_only(tmp_path: Path) -> None:
    svc = service(tmp_path)

    async def go() -> list[str]:
        return [
            e.type
            async for e in svc.stream(AGENT, "How often are passwords rotated?", workflow="support_assistant")
        ]

    assert asyncio.run(go()) == ["final"]
