"""Answers through the real gateway and a remote provider server, with the local fallback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.models import Principal
from orchestration.answers import AnswerService
from orchestration.gateway import ProviderSpec, build_gateway
from orchestration.gateway.config import Pricing, ProviderPolicy, RetryPolicy
from orchestration.types import AnswerEvent

from .conftest import FakeRetriever, make_chunk
from .fake_llm_server import FakeLLMServer, Reply, Stream, openai_completion, openai_stream

pytestmark = pytest.mark.integration

ALICE = Principal(tenant_id="acme", user="alice")


def gateway_for(url: str, **kw: Any) -> Any:
    remote = ProviderSpec(
        kind="openai",
        base_url=url,
        model="gpt-test",
        api_key="sk-x",
        policy=ProviderPolicy(pricing=Pricing(input_per_mtok=1, output_per_mtok=2)),
    )
    return build_gateway({"remote": remote}, retry=RetryPolicy(max_retries=0), **kw)


def test_remote_answer_is_verified_and_costed() -> None:
    async def go() -> Any:
        text = "Travel expenses are reimbursed within 30 days [2]. Invented claim [9]."
        async with FakeLLMServer([Reply(body=openai_completion(text))]) as server:
            gw = gateway_for(server.url)
            result = await AnswerService(FakeRetriever(keep_order=True), gw).answer(
                ALICE, "When are expenses paid?"
            )
            sent = server.requests[0].body["messages"][0]["content"]
            return result, sent, gw

    result, sent, gw = asyncio.run(go())
    assert result.answer == "Travel expenses are reimbursed within 30 days [1]. Invented claim."
    assert [c.doc_id for c in result.citations] == ["expenses"]
    assert result.citations[0].quote == "Travel expenses are reimbursed within 30 days of submission."
    assert "[2] Expense policy" in sent  # numbered sources rendered for the remote model
    assert result.usage["cost_usd"] > 0
    assert gw.ledger.summary("acme")["grounded_qa/generate"]["calls"] == 1


def test_dead_remote_falls_back_to_local() -> None:
    async def go() -> Any:
        async with FakeLLMServer([Reply(503, {})]) as server:
            return await AnswerService(FakeRetriever(), gateway_for(server.url)).answer(
                ALICE, "How often are passwords rotated?"
            )

    result = asyncio.run(go())
    assert not result.abstained and "90 days" in result.answer


def test_confidential_chunks_are_answered_locally() -> None:
    secret = make_chunk("pay", "Salaries are paid on the 25th of each month.", policy_tags=["confidential"])

    async def go() -> Any:
        async with FakeLLMServer([Reply(body=openai_completion("leak"))]) as server:
            result = await AnswerService(FakeRetriever(chunks=[secret]), gateway_for(server.url)).answer(
                ALICE, "When are salaries paid?"
            )
            return result, server.requests

    result, requests = asyncio.run(go())
    assert requests == [] and "25th" in result.answer


def test_stream_through_gateway_survives_a_cut_stream() -> None:
    cut = Stream(openai_stream(["Passwords are rotated ", "every 90 days [3]", "."]), cut_after=1)

    async def go() -> list[AnswerEvent]:
        async with FakeLLMServer([cut]) as server:
            service = AnswerService(FakeRetriever(keep_order=True), gateway_for(server.url))
            return [e async for e in service.stream(ALICE, "How often are passwords rotated?")]

    events = asyncio.run(go())
    tokens = "".join(e.text or "" for e in events if e.type == "token")
    final = events[-1]
    assert final.type == "final" and final.result is not None
    assert tokens == final.result.answer
    assert tokens.count("Passwords are rotated") == 1
    assert final.result.citations[0].doc_id == "security"


def test_stream_failing_everywhere_sends_an_error_event_and_closes_the_run() -> None:
    async def go() -> tuple[list[AnswerEvent], AnswerService]:
        async with FakeLLMServer([Reply(500, {})]) as server:
            gw = build_gateway(
                {"remote": ProviderSpec(kind="openai", base_url=server.url, model="m")},
                {"accurate": ["remote"]},
                retry=RetryPolicy(max_retries=0),
            )
            service = AnswerService(FakeRetriever(), gw)
            return [e async for e in service.stream(ALICE, "How often are passwords rotated?")], service

    events, service = asyncio.run(go())
    assert [e.type for e in events] == ["error"]
    assert events[0].code == "provider_error" and "HTTP 500" in (events[0].message or "")
    [run] = service.engine.store.list_runs()
    assert run.status == "failed"
