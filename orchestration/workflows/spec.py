"""Workflow specs: YAML, validated by pydantic, versioned by (name, version).

A spec is an ordered list of steps; `branch` jumps forward only, so every run terminates.
References (`context`, `target`, `goto`, `output`) and every expression / template are checked
when the spec loads, so a broken spec is refused before any run starts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestration.errors import WorkflowSpecError
from orchestration.workflows.expressions import check_template, compile_expression

StepId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Fallback(_Strict):
    """What to do when a step still fails after its retries: try another model alias
    (generate steps), or continue with a fixed output."""

    model: str | None = None
    output: dict[str, Any] | None = None


class Compensation(_Strict):
    """A registered action run (in reverse step order) when a later step fails or is rejected."""

    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class _Step(_Strict):
    id: StepId
    when: str | None = None  # skip the step unless this is true
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    retries: int = Field(default=0, ge=0, le=10)
    backoff_s: float = Field(default=0.2, ge=0, le=60)
    fallback: Fallback | None = None
    compensate: Compensation | None = None


class GatherStep(_Step):
    type: Literal["gather"]
    query: str = "{{ inputs.question }}"
    top_k: int | None = Field(default=None, ge=1, le=100)
    gatherers: list[str] | None = None
    # gatherer parameters, each a template (e.g. customer_id: "{{ inputs.customer_id }}"); a value
    # that renders empty is left out, so a gatherer that needs it answers 422 instead of matching ""
    params: dict[str, str] = Field(default_factory=dict)


class GenerateStep(_Step):
    type: Literal["generate"]
    model: str = "local"  # a gateway alias
    prompt: str = "{{ inputs.question }}"
    system: str | None = None
    # the gather step(s) whose chunks are the numbered sources, in order (a skipped step adds none)
    context: StepId | list[StepId] | None = None
    query: str | None = None  # what local extractive models score against (default: prompt)
    max_tokens: int = Field(default=512, ge=1, le=200_000)
    temperature: float = Field(default=0.0, ge=0, le=2)
    cite: bool = False  # verify [n] markers against the context and abstain when unsupported


CheckKind = Literal["citation_coverage", "groundedness", "confidence", "json_schema", "not_abstained"]


class Check(_Strict):
    kind: CheckKind
    min: float | None = Field(default=None, ge=0, le=1)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _complete(self) -> Check:
        if self.kind in ("citation_coverage", "groundedness", "confidence") and self.min is None:
            raise ValueError(f"check {self.kind} needs `min`")
        if self.kind == "json_schema" and self.schema_ is None:
            raise ValueError("check json_schema needs `schema`")
        return self


class ValidateStep(_Step):
    type: Literal["validate"]
    target: StepId
    checks: list[Check] = Field(min_length=1)
    # fail: the run fails (and compensates); abstain: the target's answer becomes an abstention;
    # continue: record `passed: false` for later branch / human_review conditions
    on_fail: Literal["fail", "abstain", "continue"] = "continue"


class BranchCase(_Strict):
    when: str
    goto: StepId


class BranchStep(_Step):
    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    default: str = "next"  # a step id, "next" or "end"


class ActionStep(_Step):
    """Calls a registered action (side effects such as creating a ticket); pairs with
    `compensate` for sagas."""

    type: Literal["action"]
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class HumanReviewStep(_Step):
    type: Literal["human_review"]
    target: StepId
    instructions: str = ""


ChildStep = Annotated[GatherStep | GenerateStep | ValidateStep | ActionStep, Field(discriminator="type")]


class ParallelStep(_Step):
    type: Literal["parallel"]
    steps: list[ChildStep] = Field(min_length=1)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    allow_partial: bool = False  # succeed with per-step errors instead of failing the step


Step = Annotated[
    GatherStep | GenerateStep | ValidateStep | BranchStep | ParallelStep | HumanReviewStep | ActionStep,
    Field(discriminator="type"),
]


class WorkflowSpec(_Strict):
    name: StepId
    version: int = Field(ge=1)
    description: str = ""
    inputs: list[str] = Field(default_factory=lambda: ["question"])  # required inputs
    defaults: dict[str, Any] = Field(default_factory=dict)  # values for optional inputs
    steps: list[Step] = Field(min_length=1)
    # the first of these steps that completed provides the run's output
    output: list[StepId] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> WorkflowSpec:
        order: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            children = step.steps if isinstance(step, ParallelStep) else []
            for s in [step, *children]:
                if s.id in order:
                    raise ValueError(f"step id {s.id!r} is used twice")
                order[s.id] = i
        for i, step in enumerate(self.steps):
            children = step.steps if isinstance(step, ParallelStep) else []
            for s in [step, *children]:
                _check_step(s, i, order)
        for out in self.output:
            if out not in order:
                raise ValueError(f"output names unknown step {out!r}")
        return self

    def step(self, step_id: str) -> Any:
        for step in self.steps:
            if step.id == step_id:
                return step
            if isinstance(step, ParallelStep):
                for child in step.steps:
                    if child.id == step_id:
                        return child
        raise KeyError(step_id)


def _check_step(s: Any, index: int, order: dict[str, int]) -> None:
    def earlier(ref: str | None, what: str) -> None:
        if ref is not None and order.get(ref, index) >= index:
            raise ValueError(f"step {s.id!r}: {what} {ref!r} must name an earlier step")

    if s.when:
        compile_expression(s.when)
    if isinstance(s, GatherStep):
        for template in (s.query, *s.params.values()):
            check_template(template)
    if isinstance(s, GenerateStep):
        for template in (s.prompt, s.system or "", s.query or ""):
            check_template(template)
        for ref in [s.context] if isinstance(s.context, str) else s.context or []:
            earlier(ref, "context")
    if isinstance(s, ValidateStep | HumanReviewStep):
        earlier(s.target, "target")
    if isinstance(s, BranchStep):
        targets = [c.goto for c in s.cases] + ([s.default] if s.default not in ("next", "end") else [])
        for case in s.cases:
            compile_expression(case.when)
        for t in targets:
            if order.get(t, -1) <= index:
                raise ValueError(f"branch {s.id!r} may only jump forward to a top-level step, not {t!r}")


def parse_spec(text: str) -> WorkflowSpec:
    """YAML -> validated spec; every problem becomes one WorkflowSpecError (a 422)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkflowSpecError(f"workflow spec is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise WorkflowSpecError("workflow spec must be a YAML mapping with name, version, steps, output")
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise WorkflowSpecError(f"invalid workflow spec: {problems}") from None
