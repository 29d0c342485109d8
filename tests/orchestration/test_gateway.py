"""The gateway against local provider servers: routing by data classification, retries that
honour Retry-After, fallback (also mid-stream), circuit breaking, cost accounting and budgets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from core.errors import InvalidInput
from core.llm import ChatMessage, CompletionRequest
from orchestration.errors import BudgetExhausted, PolicyRefused, ProviderError
from orchestration.gateway.breaker import CircuitBreaker
from orchestration.gateway.config import GatewayConfig, Pricing, ProviderPolicy, RetryPolicy
from orchestration.gateway.gateway import ModelGateway
from orchestration.providers.extractive import ExtractiveProvider
from orchestration.providers.openai import OpenAIProvider

from .conftest import corpus, make_chunk
from .fake_llm_server import FakeLLMServer, Reply, Stream, openai_completion, openai_stream

pytestmark = pytest.mark.integration

QUESTION = "How often are passwords rotated?"


def request(alias: str = "fast", **kw: Any) -> CompletionRequest:
    fields: dict[str, Any] = {
        "model": alias,
        "messages": [ChatMessage(role="user", content=QUESTION)],
        "query": QUESTION,
        "context": corpus(),
        "timeout_s": 1.0,
        "tenant_id": "acme",
        "workflow": "grounded_qa",
        "step": "generate",
    }
    return CompletionRequest(**(fields | kw))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def config(**kw: Any) -> GatewayConfig:
    base: dict[str, Any] = {
        "aliases": {"fast": ["remote", "local"], "accurate": ["remote"], "local": ["local"]},
        "providers": {
            "remote": ProviderPolicy(
                external=True, pricing=Pricing(input_per_mtok=1000, output_per_mtok=2000)
            ),
            "local": ProviderPolicy(external=False),
        },
        "retry": RetryPolicy(max_retries=2, base_delay_s=0.1, max_delay_s=1.0, max_retry_after_s=5),
    }
    return GatewayConfig(**{**base, **kw})


def with_gateway(
    script: list[Reply | Stream],
    body: Callable[[ModelGateway, FakeLLMServer, Clock], Awaitable[Any]],
    **cfg: Any,
) -> Any:
    async def go() -> Any:
        async with FakeLLMServer(script) as server:
            clock = Clock()
            remote = OpenAIProvider(base_url=server.url, model="gpt-test", name="remote")
            gw = ModelGateway(
                {"remote": remote, "local": ExtractiveProvider()},
                config(**cfg),
                sleep=clock.sleep,
                clock=clock,
            )
            try:
                return await body(gw, server, clock)
            finally:
                await remote.aclose()

    return asyncio.run(go())


async def collect(gw: ModelGateway, req: CompletionRequest) -> str:
    return "".join([d async for d in gw.stream(req)])


def test_remote_answer_with_cost_attributed_to_tenant_workflow_step() -> None:
    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        out = await gw.complete(request())
        assert (out.provider, out.text) == ("remote", "Remote says hi [1].")
        assert out.cost_usd == pytest.approx((12 * 1000 + 7 * 2000) / 1e6)
        assert gw.ledger.summary("acme") == {
            "grounded_qa/generate": {"calls": 1, "tokens": 19, "cost_usd": pytest.approx(0.026)}
        }

    with_gateway([Reply(body=openai_completion("Remote says hi [1]."))], body)


def test_confidential_context_never_reaches_an_external_provider() -> None:
    secret = make_chunk("hr", "Passwords are rotated every 90 days.", policy_tags=["confidential"])

    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        out = await gw.complete(request(context=[secret]))
        assert out.provider == "local"
        with pytest.raises(PolicyRefused, match="confidential"):
            await gw.complete(request("accurate", context=[secret]))
        with pytest.raises(PolicyRefused):
            await gw.complete(request("accurate", policy_tags=["regulatory"]))
        assert server.requests == []

    with_gateway([Reply(body=openai_completion("leak"))], body)


def test_allowed_tag_may_go_external() -> None:
    tagged = make_chunk("hr", "Passwords are rotated every 90 days.", policy_tags=["internal"])
    providers = config().providers | {
        "remote": ProviderPolicy(external=True, allowed_tags=["internal"]),
    }

    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        assert (await gw.complete(request(context=[tagged]))).provider == "remote"

    with_gateway([Reply(body=openai_completion("ok"))], body, providers=providers)


def test_429_waits_for_retry_after_then_succeeds() -> None:
    script = [Reply(429, {"error": "slow"}, {"retry-after": "2"}), Reply(body=openai_completion("ok"))]

    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        out = await gw.complete(request())
        assert out.provider == "remote"
        assert len(clock.sleeps) == 1 and 2.0 <= clock.sleeps[0] <= 2.1
        assert len(server.requests) == 2

    with_gateway(script, body)


def test_long_retry_after_moves_to_next_provider_without_waiting() -> None:
    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        out = await gw.complete(request())
        assert out.provider == "local" and clock.sleeps == []

    with_gateway([Reply(429, {}, {"retry-after": "120"})], body)


def test_500s_back_off_exponentially_with_jitter_then_fall_back() -> None:
    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        out = await gw.complete(request())
        assert out.provider == "local" and "Passwords are rotated every 90 days." in out.text
        assert len(server.requests) == 3
        assert 0.05 <= clock.sleeps[0] <= 0.1 and 0.1 <= clock.sleeps[1] <= 0.2

    with_gateway([Reply(500, {"error": "boom"})], body)


def test_every_attempt_is_reported_to_the_observer_with_its_error_class() -> None:
    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        seen: list[Any] = []
        gw.observer = seen.append
        out = await gw.complete(request())
        assert out.provider == "local"
        assert [(r.provider, r.outcome) for r in seen] == [
            ("remote", "provider_error"), ("remote", "provider_error"), ("remote", "provider_error"), ("local", "ok"),
        ]
        ok = seen[-1]
        assert ok.tenant_id == "acme" and ok.input_tokens > 0 and ok.output_tokens > 0

    with_gateway([Reply(500, {"error": "boom"})], body)


def test_everything_failing_is_one_clear_error() -> None:
    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        with pytest.raises(ProviderError, match="no provider for 'accurate'.*HTTP 400"):
            await gw.complete(request("accurate"))
        assert len(server.requests) == 1  # 400 is not retried

    with_gateway([Reply(400, {"error": "bad"})], body)


def test_timeout_falls_back() -> None:
    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        out = await gw.complete(request(timeout_s=0.1))
        assert out.provider == "local"

    with_gateway([Reply(body=openai_completion("late"), delay=1.0)], body, retry=RetryPolicy(max_retries=0))


def test_circuit_opens_then_half_open_probe_closes_it() -> None:
    script: list[Reply | Stream] = [Reply(500, {})] * 2 + [Reply(body=openai_completion("back"))]

    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        for _ in range(2):
            assert (await gw.complete(request())).provider == "local"
        assert gw.breakers["remote"].state == "open"
        seen = len(server.requests)
        assert (await gw.complete(request())).provider == "local"
        assert len(server.requests) == seen  # open circuit: remote not called at all
        clock.now += 31
        assert gw.breakers["remote"].state == "half_open"
        assert (await gw.complete(request())).provider == "remote"
        assert gw.breakers["remote"].state == "closed"

    from orchestration.gateway.config import BreakerPolicy

    with_gateway(script, body, retry=RetryPolicy(max_retries=0), breaker=BreakerPolicy(failure_threshold=2))


def test_stream_cut_part_way_falls_back_without_repeating_text() -> None:
    local_answer = "Passwords are rotated every 90 days. [3]"
    cut = Stream(openai_stream(["Passwords are ", "rotated", " never"]), cut_after=2)

    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        text = await collect(gw, request())
        # remote sent "Passwords are rotated", then broke; local regenerated the whole answer and the
        # gateway dropped the part the client already had
        assert text.startswith(local_answer)
        assert text.count("Passwords are") == 1

    with_gateway([cut], body, retry=RetryPolicy(max_retries=0))


def test_stream_continuation_from_a_second_attempt() -> None:
    script: list[Reply | Stream] = [
        Stream(openai_stream(["Passwords are ", "rotated"]), cut_after=2),
        Stream(openai_stream([" every 90 days [3]."])),
    ]

    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        assert await collect(gw, request("accurate")) == "Passwords are rotated every 90 days [3]."
        retry = server.requests[1].body["messages"]
        assert retry[-2] == {"role": "assistant", "content": "Passwords are rotated"}

    with_gateway(script, body)


def test_budget_exhausted_uses_free_provider_or_refuses() -> None:
    async def body(gw: ModelGateway, server: FakeLLMServer, clock: Clock) -> None:
        assert (await gw.complete(request())).provider == "remote"
        assert gw.ledger.exhausted("acme")
        assert (await gw.complete(request())).provider == "local"
        with pytest.raises(BudgetExhausted, match="acme"):
            await gw.complete(request("accurate"))
        other = request("accurate").model_copy(update={"tenant_id": "globex"})
        assert (await gw.complete(other)).provider == "remote"

    with_gateway([Reply(body=openai_completion("ok"))], body, budgets_usd={"acme": 0.01})


def test_unknown_alias_and_bad_config() -> None:
    gw = ModelGateway({"local": ExtractiveProvider()})
    with pytest.raises(InvalidInput, match="unknown model alias"):
        asyncio.run(gw.complete(request("gpt-7")))
    with pytest.raises(ValueError, match="unknown providers"):
        GatewayConfig(aliases={"fast": ["nope"]})
    with pytest.raises(ValueError, match="not given"):
        ModelGateway({}, config())


def test_breaker_allows_one_probe_at_a_time() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=lambda: now[0])
    b.record_failure()
    assert not b.allow()
    now[0] = 10
    assert b.allow() and not b.allow()
    b.record_failure()
    assert b.state == "open"


def test_aclose_closes_the_remote_providers_http_clients() -> None:
    async def scenario() -> None:
        remote = OpenAIProvider(base_url="http://127.0.0.1:9", model="m", name="remote")
        gw = ModelGateway({"local": ExtractiveProvider(), "remote": remote}, config())
        assert not remote._client.is_closed
        await gw.aclose()  # the local provider has no client and is skipped
        assert remote._client.is_closed

    asyncio.run(scenario())
