"""The model gateway: alias -> provider chain, with data-classification routing, retries with
backoff and jitter (honouring Retry-After), per-call timeouts, a circuit breaker per provider,
fallback down the chain (also when a stream breaks part-way), cost accounting and budgets.

It implements the same `ModelProvider` Protocol as the providers, so services take either.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from core import tracing
from core.errors import InvalidInput
from core.llm import ChatMessage, Completion, CompletionRequest, ModelProvider
from orchestration._text import estimate_tokens
from orchestration.errors import PolicyRefused, ProviderError, ProviderRateLimited, StreamInterrupted
from orchestration.gateway.breaker import CircuitBreaker
from orchestration.gateway.budget import UsageLedger, UsageRecord
from orchestration.gateway.config import GatewayConfig, local_only

CONTINUE_PROMPT = "Continue exactly where the previous answer stopped; do not repeat it."


@dataclass(frozen=True)
class CallRecord:
    """One provider attempt as the gateway saw it, for metrics: `outcome` is `ok` or the error's
    class (`provider_timeout`, `provider_rate_limited`, `provider_error`, `circuit_open`, ...)."""

    provider: str
    model: str
    tenant_id: str
    outcome: str
    seconds: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


def error_class(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "provider_timeout"
    return str(getattr(exc, "code", None) or "provider_error")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    message = getattr(exc, "message", None)
    return str(message) if message else f"failed ({type(exc).__name__})"


class ModelGateway:
    name = "gateway"

    def __init__(
        self,
        providers: Mapping[str, ModelProvider],
        config: GatewayConfig | None = None,
        *,
        ledger: UsageLedger | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or local_only()
        missing = sorted(set(self.config.providers) - set(providers))
        if missing:
            raise ValueError(f"gateway config names providers that were not given: {missing}")
        self.providers = dict(providers)
        b = self.config.breaker
        self.breakers = {
            n: CircuitBreaker(b.failure_threshold, b.reset_after_s, clock) for n in self.providers
        }
        self.ledger = ledger or UsageLedger(self.config.budgets_usd, self.config.default_budget_usd)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.observer: Callable[[CallRecord], None] | None = None  # e.g. Prometheus counters

    def _observe(self, name: str, req: CompletionRequest, outcome: str, started: float,
                 c: Completion | None = None) -> None:
        if self.observer is None:
            return
        self.observer(CallRecord(
            provider=name, model=(c.model if c is not None and c.model else req.model), tenant_id=req.tenant_id or "-",
            outcome=outcome, seconds=time.perf_counter() - started,
            input_tokens=c.input_tokens if c else 0, output_tokens=c.output_tokens if c else 0,
            cost_usd=(c.cost_usd or 0.0) if c else 0.0,
        ))  # fmt: skip

    async def aclose(self) -> None:
        """Close the providers' HTTP clients (those that hold one); at shutdown, on the loop
        that used them."""
        for provider in self.providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    # ---- routing ---------------------------------------------------------------------------

    def chain(self, req: CompletionRequest) -> list[str]:
        """Providers to try, in order: the alias's chain minus those the data may not reach and,
        once the tenant's budget is spent, minus the paid ones."""
        alias = req.model
        if alias in self.config.aliases:
            names = self.config.aliases[alias]
        elif alias in self.config.providers:
            names = [alias]
        else:
            known = ", ".join(sorted(self.config.aliases))
            raise InvalidInput(f"unknown model alias {alias!r}; configured aliases: {known}")
        tags = req.all_policy_tags()
        allowed = [n for n in names if self.config.policy(n).allows(tags)]
        if not allowed:
            raise PolicyRefused(
                f"context tagged {sorted(tags)} may not be sent to any provider of {alias!r} "
                f"({', '.join(names)}); add a self-hosted provider to the alias or allow these tags "
                "for one of its providers",
                alias=alias,
                tags=sorted(tags),
            )
        if self.ledger.exhausted(req.tenant_id):
            free = [n for n in allowed if self.config.policy(n).pricing.free]
            if not free:
                self.ledger.check(req.tenant_id)
            allowed = free
        return allowed

    def _timeout(self, name: str, req: CompletionRequest) -> float:
        cap = self.config.policy(name).timeout_s
        return min(req.timeout_s, cap) if cap else req.timeout_s

    def _delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds before the next attempt on the same provider; None: move on instead."""
        policy = self.config.retry
        if isinstance(exc, ProviderRateLimited):
            if exc.retry_after > policy.max_retry_after_s:
                return None
            return exc.retry_after + self._rng.uniform(0, policy.base_delay_s)
        backoff = min(policy.max_delay_s, policy.base_delay_s * 2**attempt)
        return self._rng.uniform(backoff / 2, backoff)

    def _account(self, name: str, req: CompletionRequest, c: Completion) -> Completion:
        cost = c.cost_usd or self.config.policy(name).pricing.cost(c.input_tokens, c.output_tokens)
        c = c.model_copy(update={"cost_usd": round(cost, 8)})
        self.ledger.record(
            UsageRecord(
                tenant_id=req.tenant_id or "-",
                workflow=req.workflow,
                step=req.step,
                provider=name,
                model=c.model,
                input_tokens=c.input_tokens,
                output_tokens=c.output_tokens,
                cost_usd=c.cost_usd,
            )
        )
        return c

    async def _backoff(self, name: str, attempt: int, exc: BaseException) -> bool:
        """Record the failure; sleep and return True when the same provider should be retried."""
        if not isinstance(exc, ProviderRateLimited):
            self.breakers[name].record_failure()
        if not getattr(exc, "retryable", True) or attempt >= self.config.retry.max_retries:
            return False
        delay = self._delay(attempt, exc)
        if delay is None:
            return False
        await self._sleep(delay)
        return True

    # ---- ModelProvider ---------------------------------------------------------------------

    async def complete(self, req: CompletionRequest) -> Completion:
        errors: list[str] = []
        for name in self.chain(req):
            for attempt in range(self.config.retry.max_retries + 1):
                started = time.perf_counter()
                if not self.breakers[name].allow():
                    errors.append(f"{name}: circuit open")
                    self._observe(name, req, "circuit_open", started)
                    break
                try:
                    with tracing.span(
                        "model.call", provider=name, model=req.model, attempt=attempt, tenant=req.tenant_id,
                        workflow=req.workflow, step=req.step,
                    ) as sp:  # fmt: skip
                        async with asyncio.timeout(self._timeout(name, req)):
                            c = await self.providers[name].complete(req)
                        sp.set_attribute("input_tokens", c.input_tokens)
                        sp.set_attribute("output_tokens", c.output_tokens)
                except Exception as exc:
                    errors.append(f"{name}: {_describe(exc)}")
                    self._observe(name, req, error_class(exc), started)
                    if await self._backoff(name, attempt, exc):
                        continue
                    break
                self.breakers[name].record_success()
                c = self._account(name, req, c)
                self._observe(name, req, "ok", started, c)
                return c
        raise ProviderError(
            f"no provider for {req.model!r} could answer ({'; '.join(errors)})", retryable=False
        )

    async def stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        """Deltas from the first provider that works. If a stream breaks after text was sent, the
        next attempt is asked to continue (the sent text as an assistant turn); a provider that
        regenerates from the start instead has the already-sent prefix removed."""
        errors: list[str] = []
        emitted = ""
        for name in self.chain(req):
            for attempt in range(self.config.retry.max_retries + 1):
                started = time.perf_counter()
                if not self.breakers[name].allow():
                    errors.append(f"{name}: circuit open")
                    self._observe(name, req, "circuit_open", started)
                    break
                preq = req
                if emitted:
                    extra = [
                        ChatMessage(role="assistant", content=emitted),
                        ChatMessage(role="user", content=CONTINUE_PROMPT),
                    ]
                    preq = req.model_copy(update={"messages": [*req.messages, *extra]})
                regen, passthrough, produced = "", not emitted, ""
                iterator = self.providers[name].stream(preq).__aiter__()
                try:
                    while True:
                        try:
                            async with asyncio.timeout(self._timeout(name, req)):
                                delta = await anext(iterator)
                        except StopAsyncIteration:
                            break
                        if not passthrough:
                            regen += delta
                            if emitted.startswith(regen):
                                continue  # still repeating what the client already has
                            passthrough = True
                            delta = regen[len(emitted) :] if regen.startswith(emitted) else regen
                        if delta:
                            emitted += delta
                            produced += delta
                            yield delta
                except Exception as exc:
                    errors.append(f"{name}: {_describe(exc)}")
                    self._observe(name, req, error_class(exc), started)
                    if await self._backoff(name, attempt, exc):
                        continue
                    break
                finally:
                    close = getattr(iterator, "aclose", None)
                    if close is not None:
                        await close()
                self.breakers[name].record_success()
                prompt = "".join(m.content for m in preq.messages)
                done = self._account(name, req, Completion(text=produced, model=req.model, provider=name,
                                                           input_tokens=estimate_tokens(prompt),
                                                           output_tokens=estimate_tokens(produced)))  # fmt: skip
                self._observe(name, req, "ok", started, done)
                return
        summary = "; ".join(errors)
        if emitted:
            raise StreamInterrupted(f"the answer stream broke and no fallback could finish it ({summary})")
        raise ProviderError(f"no provider for {req.model!r} could answer ({summary})", retryable=False)
