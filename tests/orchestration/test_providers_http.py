"""The HTTP providers against local servers speaking their protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from core.llm import ChatMessage, CompletionRequest, ModelProvider
from orchestration.errors import ProviderError, ProviderRateLimited, ProviderTimeout, StreamInterrupted
from orchestration.providers._http import parse_retry_after
from orchestration.providers.anthropic import AnthropicProvider
from orchestration.providers.openai import OpenAIProvider

from .fake_llm_server import (
    FakeLLMServer,
    Reply,
    Stream,
    anthropic_message,
    anthropic_stream,
    openai_completion,
    openai_stream,
)

pytestmark = pytest.mark.integration

REQ = CompletionRequest(
    messages=[ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi?")],
    max_tokens=50,
    timeout_s=2.0,
)


def openai(url: str) -> OpenAIProvider:
    return OpenAIProvider(base_url=url + "/v1", model="gpt-test", api_key="sk-test")


def anthropic(url: str) -> AnthropicProvider:
    return AnthropicProvider(base_url=url, model="claude-test", api_key="ak-test")


Factory = Callable[[str], Any]


def run(
    script: list[Reply | Stream], factory: Factory, body: Callable[[ModelProvider], Awaitable[Any]]
) -> Any:
    async def go() -> tuple[Any, FakeLLMServer]:
        async with FakeLLMServer(script) as server:
            provider = factory(server.url)
            try:
                return await body(provider), server
            finally:
                await provider.aclose()

    return asyncio.run(go())


async def collect(p: ModelProvider, req: CompletionRequest = REQ) -> str:
    return "".join([d async for d in p.stream(req)])


def test_openai_complete_sends_protocol_and_reads_usage() -> None:
    out, server = run([Reply(body=openai_completion("Hello [1]."))], openai, lambda p: p.complete(REQ))
    assert (out.text, out.input_tokens, out.output_tokens, out.provider) == ("Hello [1].", 12, 7, "openai")
    req = server.requests[0]
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert req.body["model"] == "gpt-test" and req.body["stream"] is False


def test_anthropic_complete_moves_system_to_top_level() -> None:
    out, server = run([Reply(body=anthropic_message("Hi there."))], anthropic, lambda p: p.complete(REQ))
    assert (out.text, out.input_tokens, out.output_tokens, out.finish_reason) == ("Hi there.", 20, 9, "stop")
    req = server.requests[0]
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == "ak-test" and req.headers["anthropic-version"] == "2023-06-01"
    assert req.body["system"] == "Be brief."
    assert req.body["messages"] == [{"role": "user", "content": "Hi?"}]


@pytest.mark.parametrize(
    ("factory", "script"),
    [
        (openai, [Stream(openai_stream(["Hel", "lo ", "[1]."]))]),
        (anthropic, [Stream(anthropic_stream(["Hel", "lo ", "[1]."]))]),
    ],
)
def test_streams_deltas(factory: Factory, script: list[Reply | Stream]) -> None:
    text, server = run(script, factory, collect)
    assert text == "Hello [1]."
    assert server.requests[0].body["stream"] is True


@pytest.mark.parametrize(
    ("factory", "events"),
    [(openai, openai_stream(["a", "b", "c"])), (anthropic, anthropic_stream(["a", "b", "c"]))],
)
def test_stream_cut_mid_way_is_interrupted(factory: Factory, events: list[str]) -> None:
    with pytest.raises(StreamInterrupted):
        run([Stream(events, cut_after=3)], factory, collect)


@pytest.mark.parametrize(
    ("factory", "events"),
    [(openai, openai_stream(["a"], done=False)), (anthropic, anthropic_stream(["a"], stop=False))],
)
def test_stream_without_terminator_is_interrupted(factory: Factory, events: list[str]) -> None:
    with pytest.raises(StreamInterrupted, match="ended"):
        run([Stream(events)], factory, collect)


@pytest.mark.parametrize("factory", [openai, anthropic])
def test_429_carries_retry_after(factory: Factory) -> None:
    with pytest.raises(ProviderRateLimited) as info:
        run([Reply(429, {"error": "slow down"}, {"retry-after": "7"})], factory, lambda p: p.complete(REQ))
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("factory", [openai, anthropic])
def test_500_is_retryable_400_is_not(factory: Factory) -> None:
    with pytest.raises(ProviderError) as info:
        run([Reply(500, {"error": "boom"})], factory, lambda p: p.complete(REQ))
    assert info.value.retryable and "HTTP 500" in info.value.message
    with pytest.raises(ProviderError) as info:
        run([Reply(400, {"error": "bad"})], factory, lambda p: p.complete(REQ))
    assert not info.value.retryable


@pytest.mark.parametrize("factory", [openai, anthropic])
def test_malformed_json_and_shapes(factory: Factory) -> None:
    with pytest.raises(ProviderError, match="not JSON"):
        run([Reply(body="{not json")], factory, lambda p: p.complete(REQ))
    with pytest.raises(ProviderError, match="unexpected response shape"):
        run([Reply(body={"nothing": True})], factory, lambda p: p.complete(REQ))
    with pytest.raises(ProviderError, match="malformed stream event"):
        run([Stream(["data: {broken\n\n"])], factory, collect)


@pytest.mark.parametrize("factory", [openai, anthropic])
def test_timeout(factory: Factory) -> None:
    slow = REQ.model_copy(update={"timeout_s": 0.1})
    with pytest.raises(ProviderTimeout):
        run([Reply(body=openai_completion("late"), delay=1.0)], factory, lambda p: p.complete(slow))


def test_connection_refused_is_a_provider_error() -> None:
    async def go() -> None:
        p = OpenAIProvider(base_url="http://127.0.0.1:9", model="m")
        try:
            await p.complete(REQ)
        finally:
            await p.aclose()

    with pytest.raises(ProviderError, match="could not talk"):
        asyncio.run(go())


def test_retry_after_http_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon") is None
