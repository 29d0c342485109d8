"""Builds providers and the gateway from plain configuration, for the composition root.

The local extractive provider is always present (named `local`): the server must answer
without a network, and it is the fallback at the end of every default chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from core.llm import ModelProvider
from orchestration.gateway.budget import UsageLedger
from orchestration.gateway.config import (
    DEFAULT_ALIASES,
    BreakerPolicy,
    GatewayConfig,
    ProviderPolicy,
    RetryPolicy,
)
from orchestration.gateway.gateway import ModelGateway
from orchestration.providers.anthropic import AnthropicProvider
from orchestration.providers.extractive import ExtractiveProvider
from orchestration.providers.openai import OpenAIProvider

LOCAL = "local"


class ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["extractive", "openai", "anthropic"]
    model: str = ""
    base_url: str | None = None
    api_key: SecretStr | None = None
    policy: ProviderPolicy = Field(default_factory=ProviderPolicy)


def build_provider(name: str, spec: ProviderSpec) -> ModelProvider:
    key = spec.api_key.get_secret_value() if spec.api_key else None
    if spec.kind == "extractive":
        return ExtractiveProvider(name=name)
    if not spec.model:
        raise ValueError(f"provider {name!r} ({spec.kind}) needs `model`")
    if spec.kind == "openai":
        if not spec.base_url:
            raise ValueError(f"provider {name!r} (openai) needs `base_url`, e.g. https://api.openai.com/v1")
        return OpenAIProvider(base_url=spec.base_url, model=spec.model, api_key=key, name=name)
    return AnthropicProvider(
        model=spec.model, api_key=key, base_url=spec.base_url or "https://api.anthropic.com", name=name
    )


def build_gateway(
    providers: Mapping[str, ProviderSpec] | None = None,
    aliases: Mapping[str, list[str]] | None = None,
    *,
    retry: RetryPolicy | None = None,
    breaker: BreakerPolicy | None = None,
    budgets_usd: Mapping[str, float] | None = None,
    default_budget_usd: float | None = None,
) -> ModelGateway:
    """Without aliases, every default alias tries the remote providers in the order given, then
    `local`."""
    specs = dict(providers or {})
    specs.setdefault(LOCAL, ProviderSpec(kind="extractive"))
    policies = {
        name: s.policy if s.kind != "extractive" else s.policy.model_copy(update={"external": False})
        for name, s in specs.items()
    }
    remotes = [n for n, s in specs.items() if s.kind != "extractive"]
    chains = dict(aliases) if aliases else {a: [*remotes, LOCAL] for a in DEFAULT_ALIASES if a != LOCAL}
    chains.setdefault(LOCAL, [LOCAL])
    config = GatewayConfig(
        aliases=chains,
        providers=policies,
        retry=retry or RetryPolicy(),
        breaker=breaker or BreakerPolicy(),
        budgets_usd=dict(budgets_usd or {}),
        default_budget_usd=default_budget_usd,
    )
    built = {name: build_provider(name, s) for name, s in specs.items()}
    return ModelGateway(built, config, ledger=UsageLedger(config.budgets_usd, config.default_budget_usd))
