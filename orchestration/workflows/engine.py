"""The workflow executor: ordered steps, forward branches, bounded parallelism, per-step timeouts,
retries with backoff, fallbacks, human review pauses and saga compensation.

Durability comes from the event log: every completed step's output is appended before the next
step starts, and `resume()` replays those outputs instead of executing the steps again. So a run
cut off by a restart continues from its last completed step (`recover()` does this for every run
left `running` or `compensating`), and a reviewed run continues in whatever process gets the review.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from core import tracing
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.llm import ModelProvider, Retriever
from core.models import Principal, Role
from orchestration.workflows import steps as x
from orchestration.workflows.expressions import ExpressionError, evaluate
from orchestration.workflows.registry import WorkflowRegistry
from orchestration.workflows.spec import (
    ActionStep,
    BranchStep,
    GatherStep,
    GenerateStep,
    HumanReviewStep,
    ParallelStep,
    ValidateStep,
    WorkflowSpec,
)
from orchestration.workflows.store import TERMINAL, RunRecord, RunStoreProtocol, StepEvent
from orchestration.workflows.types import ReviewDecision, RunView, StepFailed, safe_error


async def _unregistered(params: dict[str, Any], ctx: x.StepContext) -> dict[str, Any]:
    raise InvalidInput("the compensation action is not registered in this process")


class WorkflowEngine:
    def __init__(
        self,
        store: RunStoreProtocol,
        retriever: Retriever,
        model: ModelProvider,
        *,
        registry: WorkflowRegistry | None = None,
        actions: Mapping[str, x.Action] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.registry = registry or WorkflowRegistry.builtin()
        self._retriever = retriever
        self._model = model
        self._actions = dict(actions or {})
        self._sleep = sleep

    # ---- public API ------------------------------------------------------------------------

    async def start(self, workflow: str, principal: Principal, inputs: dict[str, Any]) -> RunRecord:
        run = self.create_run(workflow, principal, inputs)
        return await self._execute(run.id, principal)

    def create_run(self, workflow: str, principal: Principal, inputs: dict[str, Any]) -> RunRecord:
        """Record a run without executing it (the streaming path runs its first steps itself,
        records them, then hands the rest to `resume`)."""
        spec = self.registry.get(workflow)
        inputs = {**spec.defaults, **inputs}
        missing = [name for name in spec.inputs if inputs.get(name) in (None, "")]
        if missing:
            raise InvalidInput(f"workflow {workflow!r} needs inputs: {', '.join(missing)}")
        run = RunRecord(
            id=uuid.uuid4().hex,
            tenant_id=principal.tenant_id,
            workflow=spec.name,
            version=spec.version,
            spec=spec.model_dump(mode="json", by_alias=True),
            principal=principal.model_dump(mode="json"),
            inputs=inputs,
        )
        self.store.create_run(run)
        return run

    async def resume(self, run_id: str, principal: Principal | None = None) -> RunRecord:
        run = self.load(run_id)
        if run.status == "compensating":
            return await self._compensate(run, run.reason or "interrupted while compensating", "failed")
        if run.status != "running":
            return run
        return await self._execute(run_id, principal)

    async def recover(self) -> list[RunRecord]:
        """Resume every run a previous process left unfinished (call once at start-up)."""
        pending = self.store.list_runs(status="running") + self.store.list_runs(status="compensating")
        return [await self.resume(r.id) for r in pending]

    async def review(self, run_id: str, principal: Principal, decision: ReviewDecision) -> RunRecord:
        run = self.get_run(run_id, principal).run
        if not principal.can_write():
            raise PermissionDenied("reviewing a run needs the editor or admin role")
        if run.status != "awaiting_review":
            raise Conflict(f"run {run_id} is {run.status}, not awaiting_review")
        if decision.action == "edit" and not decision.text:
            raise InvalidInput("an `edit` review needs the edited `text`")  # before anything is logged
        paused = [e for e in self.store.events(run_id) if e.kind == "paused"][-1]
        spec = WorkflowSpec.model_validate(run.spec)
        step = spec.step(paused.step_id)
        record = {**decision.model_dump(), "reviewer": principal.user}
        self.store.append_event(run_id, step.id, "reviewed", output=record)
        if decision.action == "reject":
            reason = f"rejected by {principal.user}" + (f": {decision.comment}" if decision.comment else "")
            return await self._compensate(run, reason, "rejected")
        ctx = self._context(run, self._outputs(self.store.events(run_id)))
        target = dict(ctx.outputs.get(step.target, {}))
        if decision.action == "edit":
            assert decision.text is not None
            target_spec = spec.step(step.target)
            chunks = ctx.chunks(target_spec.context if isinstance(target_spec, GenerateStep) else None)
            target = x.edited_output(target, decision.text, chunks)
        self.store.append_event(run_id, step.id, "completed", output={**target, "review": record})
        self.store.update_run(run_id, status="running")
        return await self._execute(run_id)

    def get_run(self, run_id: str, principal: Principal) -> RunView:
        """Visible to whoever started the run and to tenant admins only: its events hold chunks
        retrieved under the starter's ACL, which other users of the tenant may not be allowed."""
        run = self.store.get_run(run_id)
        if run is None or run.tenant_id != principal.tenant_id:
            raise NotFound(f"no run {run_id}")
        if run.principal.get("user") != principal.user and principal.role != Role.admin:
            raise NotFound(f"no run {run_id}")
        return RunView(run=run, events=self.store.events(run_id))

    # ---- execution -----------------------------------------------------------------------

    def load(self, run_id: str) -> RunRecord:
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        return run

    @staticmethod
    def _outputs(events: list[StepEvent]) -> dict[str, dict[str, Any]]:
        return {e.step_id: e.output or {} for e in events if e.kind == "completed"}

    def _context(
        self, run: RunRecord, outputs: dict[str, dict[str, Any]], principal: Principal | None = None
    ) -> x.StepContext:
        """`principal` is the caller's own object on a fresh run; a resumed run rebuilds it from
        the run record (who started the run is who it retrieves for)."""
        who = principal or Principal.model_validate(run.principal)
        return x.StepContext(run.id, run.workflow, who, run.inputs, outputs)

    async def _execute(self, run_id: str, principal: Principal | None = None) -> RunRecord:
        run = self.load(run_id)
        with tracing.span("workflow.run", workflow=run.workflow, tenant=run.tenant_id, run_id=run_id) as sp:
            done = await self._execute_steps(run, principal)
            sp.set_attribute("status", done.status)
            return done

    async def _execute_steps(self, run: RunRecord, principal: Principal | None) -> RunRecord:
        run_id = run.id
        spec = WorkflowSpec.model_validate(run.spec)
        events = self.store.events(run_id)
        ctx = self._context(run, self._outputs(events), principal)
        skipped = {e.step_id for e in events if e.kind == "skipped"}
        index = 0
        while index < len(spec.steps):
            step = spec.steps[index]
            index += 1
            if step.id in skipped:
                continue
            if step.id not in ctx.outputs:
                try:
                    if step.when and not evaluate(step.when, ctx.env()):
                        self.store.append_event(run_id, step.id, "skipped")
                        continue
                except ExpressionError as exc:
                    return await self._compensate(run, f"step {step.id!r}: {safe_error(exc)}", "failed")
                if isinstance(step, HumanReviewStep):
                    self.store.append_event(run_id, step.id, "paused", output={"target": step.target})
                    self.store.update_run(run_id, status="awaiting_review")
                    return self.load(run_id)
                try:
                    output = await self._attempts(step, ctx)
                except StepFailed as exc:
                    return await self._compensate(run, str(exc), "failed")
                self.store.append_event(run_id, step.id, "completed", output=output)
                ctx.outputs[step.id] = output
            if isinstance(step, BranchStep):
                goto = ctx.outputs[step.id]["goto"]
                if goto == "end":
                    break
                if goto != "next":
                    index = next(i for i, s in enumerate(spec.steps) if s.id == goto)
        result = next((ctx.outputs[s] for s in spec.output if s in ctx.outputs), {})
        cost = sum(float(o.get("usage", {}).get("cost_usd", 0.0)) for o in ctx.outputs.values())
        self.store.update_run(run_id, status="succeeded", output=result, cost_usd=round(cost, 6))
        return self.load(run_id)

    async def _attempts(self, step: Any, ctx: x.StepContext) -> dict[str, Any]:
        with tracing.span(
            "workflow.step", workflow=ctx.workflow, tenant=ctx.principal.tenant_id, step=step.id, type=step.type
        ):
            return await self._attempts_untraced(step, ctx)

    async def _attempts_untraced(self, step: Any, ctx: x.StepContext) -> dict[str, Any]:
        """Timeout per attempt, exponential backoff between attempts, then the fallback."""
        last = ""
        for attempt in range(step.retries + 1):
            try:
                async with asyncio.timeout(step.timeout_s):
                    return await self._dispatch(step, ctx)
            except StepFailed:
                raise
            except Exception as exc:
                last = safe_error(exc)
                kind = "retrying" if attempt < step.retries else "failed"
                self.store.append_event(ctx.run_id, step.id, kind, attempt=attempt, error=last)
                if attempt < step.retries:
                    await self._sleep(step.backoff_s * 2**attempt)
        fb = step.fallback
        if fb is not None and fb.model and isinstance(step, GenerateStep):
            try:
                async with asyncio.timeout(step.timeout_s):
                    return {
                        **await x.run_generate(step, ctx, self._model, alias=fb.model),
                        "fallback": fb.model,
                    }
            except Exception as exc:
                last = safe_error(exc)
                self.store.append_event(ctx.run_id, step.id, "failed", attempt=step.retries + 1, error=last)
        if fb is not None and fb.output is not None:
            return {**fb.output, "fallback": True}
        raise StepFailed(step.id, last)

    async def _dispatch(self, step: Any, ctx: x.StepContext) -> dict[str, Any]:
        if isinstance(step, GatherStep):
            return await x.run_gather(step, ctx, self._retriever)
        if isinstance(step, GenerateStep):
            return await x.run_generate(step, ctx, self._model)
        if isinstance(step, ValidateStep):
            out = x.run_validate(step, ctx)
            if not out["passed"] and step.on_fail == "fail":
                raise StepFailed(step.id, "; ".join(out["failures"]))
            return out
        if isinstance(step, BranchStep):
            return x.run_branch(step, ctx)
        if isinstance(step, ActionStep):
            return await x.run_action(step, ctx, self._actions)
        if isinstance(step, ParallelStep):
            return await self._parallel(step, ctx)
        raise TypeError(f"no executor for {type(step).__name__}")

    async def _parallel(self, step: ParallelStep, ctx: x.StepContext) -> dict[str, Any]:
        limit = asyncio.Semaphore(step.max_concurrency)
        errors: dict[str, str] = {}

        async def child(c: Any) -> None:
            if c.id in ctx.outputs:
                return  # completed before a restart: replayed, not re-run
            async with limit:
                try:
                    out = await self._attempts(c, ctx)
                except StepFailed as exc:
                    if not step.allow_partial:
                        raise
                    errors[c.id] = exc.reason
                    return
            self.store.append_event(ctx.run_id, c.id, "completed", output=out)
            ctx.outputs[c.id] = out

        try:
            async with asyncio.TaskGroup() as group:
                for c in step.steps:
                    group.create_task(child(c))
        except* StepFailed as eg:
            first = eg.exceptions[0]
            raise StepFailed(step.id, str(first)) from None
        return {"results": {c.id: ctx.outputs.get(c.id) for c in step.steps}, "errors": errors}

    async def _compensate(self, run: RunRecord, reason: str, status_if_none: str) -> RunRecord:
        """Undo completed steps that declared `compensate`, newest first (each at most once)."""
        self.store.update_run(run.id, status="compensating", reason=reason)
        spec = WorkflowSpec.model_validate(run.spec)
        events = self.store.events(run.id)
        done = [e.step_id for e in events if e.kind == "completed"]
        finished = {e.step_id for e in events if e.kind in ("compensated", "compensation_failed")}
        ctx = self._context(run, self._outputs(events))
        undone = 0
        for step_id in reversed(done):
            comp = spec.step(step_id).compensate
            if comp is None:
                continue
            undone += 1
            if step_id in finished:
                continue
            try:
                action = self._actions.get(comp.action, _unregistered)
                out = await action(x.render_params(comp.with_, ctx.env()), ctx)
                self.store.append_event(run.id, step_id, "compensated", output=out)
            except Exception as exc:
                self.store.append_event(run.id, step_id, "compensation_failed", error=safe_error(exc))
        status = "compensated" if undone else status_if_none
        self.store.update_run(run.id, status=status, reason=reason)
        return self.load(run.id)


__all__ = ["TERMINAL", "ReviewDecision", "RunView", "StepFailed", "WorkflowEngine"]
