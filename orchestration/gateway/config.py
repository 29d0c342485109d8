"""Gateway configuration: aliases -> ordered provider chains, per-provider data policy and
prices, retry / breaker settings, tenant budgets. Built by the composition root from settings;
nothing here reads the environment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_ALIASES = ("fast", "accurate", "long-context", "local")


class Pricing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000

    @property
    def free(self) -> bool:
        return self.input_per_mtok == 0 and self.output_per_mtok == 0


class ProviderPolicy(BaseModel):
    """`external` providers leave the deployment: they only get context whose policy tags are all
    in `allowed_tags`. Self-hosted ones (external=False) may see any tag."""

    model_config = ConfigDict(extra="forbid")

    external: bool = True
    allowed_tags: list[str] = Field(default_factory=list)
    pricing: Pricing = Field(default_factory=Pricing)
    timeout_s: float | None = Field(default=None, gt=0)  # caps the request's own timeout

    def allows(self, tags: set[str]) -> bool:
        return not self.external or tags <= set(self.allowed_tags)


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(default=2, ge=0, le=10)
    base_delay_s: float = Field(default=0.25, ge=0)
    max_delay_s: float = Field(default=8.0, ge=0)
    # a Retry-After longer than this is not waited for: the next provider is tried instead
    max_retry_after_s: float = Field(default=30.0, ge=0)


class BreakerPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(default=5, ge=1)
    reset_after_s: float = Field(default=30.0, gt=0)


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aliases: dict[str, list[str]]
    providers: dict[str, ProviderPolicy] = Field(default_factory=dict)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    budgets_usd: dict[str, float] = Field(default_factory=dict)  # tenant -> spend limit
    default_budget_usd: float | None = Field(default=None, ge=0)  # tenants not listed

    @model_validator(mode="after")
    def _known_providers(self) -> GatewayConfig:
        for alias, chain in self.aliases.items():
            if not chain:
                raise ValueError(f"alias {alias!r} has no providers")
            unknown = [p for p in chain if p not in self.providers]
            if unknown:
                raise ValueError(
                    f"alias {alias!r} names unknown providers {unknown}; add them to `providers`"
                )
        return self

    def policy(self, provider: str) -> ProviderPolicy:
        return self.providers[provider]


def local_only(provider: str = "local") -> GatewayConfig:
    """The embedded default: every alias served by the local extractive provider."""
    return GatewayConfig(
        aliases={alias: [provider] for alias in DEFAULT_ALIASES},
        providers={provider: ProviderPolicy(external=False)},
    )
