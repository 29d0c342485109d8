"""Token and cost accounting per call, attributed to tenant / workflow / step, and per-tenant
spend limits. In-process; a multi-replica deployment needs the same ledger on Redis (the
interface is what the gateway uses: `check`, `record`, `spent`)."""

from __future__ import annotations

import threading
from collections import defaultdict

from pydantic import BaseModel

from orchestration.errors import BudgetExhausted


class UsageRecord(BaseModel):
    tenant_id: str
    workflow: str | None
    step: str | None
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


class UsageLedger:
    def __init__(
        self, budgets_usd: dict[str, float] | None = None, default_budget_usd: float | None = None
    ) -> None:
        self._budgets = dict(budgets_usd or {})
        self._default = default_budget_usd
        self._spent: dict[str, float] = defaultdict(float)
        self._records: list[UsageRecord] = []
        self._lock = threading.Lock()

    def limit(self, tenant_id: str) -> float | None:
        return self._budgets.get(tenant_id, self._default)

    def spent(self, tenant_id: str) -> float:
        return self._spent[tenant_id]

    def exhausted(self, tenant_id: str | None) -> bool:
        if tenant_id is None:
            return False
        limit = self.limit(tenant_id)
        return limit is not None and self._spent[tenant_id] >= limit

    def check(self, tenant_id: str | None) -> None:
        if tenant_id is not None and self.exhausted(tenant_id):
            raise BudgetExhausted(
                f"tenant {tenant_id} has used its model budget (${self.limit(tenant_id):.2f}); "
                "raise the budget or wait for it to reset — the local model stays available",
                retry_after=3600.0,
                tenant_id=tenant_id,
            )

    def record(self, rec: UsageRecord) -> None:
        with self._lock:
            self._records.append(rec)
            self._spent[rec.tenant_id] += rec.cost_usd

    def records(self, tenant_id: str | None = None) -> list[UsageRecord]:
        return [r for r in self._records if tenant_id is None or r.tenant_id == tenant_id]

    def summary(self, tenant_id: str) -> dict[str, dict[str, float]]:
        """Cost per `workflow/step` for one tenant."""
        out: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "tokens": 0, "cost_usd": 0.0})
        for r in self.records(tenant_id):
            row = out[f"{r.workflow or '-'}/{r.step or '-'}"]
            row["calls"] += 1
            row["tokens"] += r.input_tokens + r.output_tokens
            row["cost_usd"] += r.cost_usd
        return dict(out)

    def reset(self, tenant_id: str | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._spent.clear()
            else:
                self._spent.pop(tenant_id, None)
