"""Orchestration's branch of the error tree (all subclasses of core.errors, so app/ maps them).

Unavailable
└── ProviderError            provider_error        a provider call failed (after retries)
    ├── ProviderTimeout      provider_timeout
    └── StreamInterrupted    stream_interrupted    a stream broke after it had started
RateLimited
├── ProviderRateLimited      provider_rate_limited  429 from a provider (retry_after set)
└── BudgetExhausted          budget_exhausted       the tenant's model budget is spent
PermissionDenied
└── PolicyRefused            policy_refused         no provider is allowed for the data
InvalidInput
└── WorkflowSpecError        invalid_workflow
"""

from __future__ import annotations

from typing import Any

from core.errors import InvalidInput, PermissionDenied, RateLimited, Unavailable


class ProviderError(Unavailable):
    """`retryable` is False for answers that will not change on retry (bad request, bad key):
    the gateway then moves straight to the next provider instead of backing off."""

    code = "provider_error"

    def __init__(self, message: str, *, retryable: bool = True, **details: Any) -> None:
        super().__init__(message, **details)
        self.retryable = retryable


class ProviderTimeout(ProviderError):
    code = "provider_timeout"


class StreamInterrupted(ProviderError):
    code = "stream_interrupted"


class ProviderRateLimited(RateLimited):
    code = "provider_rate_limited"


class BudgetExhausted(RateLimited):
    code = "budget_exhausted"


class PolicyRefused(PermissionDenied):
    code = "policy_refused"


class WorkflowSpecError(InvalidInput):
    code = "invalid_workflow"
