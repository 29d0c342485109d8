"""The workflows this server can run (`POST /v1/answers` `workflow`, chat `model`)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.deps import ContainerDep, PrincipalDep

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])


class StepPublic(BaseModel):
    id: str
    type: str
    model: str | None = None  # generate steps: the gateway alias they call
    when: str | None = None


class WorkflowPublic(BaseModel):
    name: str
    version: int
    description: str
    inputs: list[str]
    steps: list[StepPublic]


class WorkflowsPublic(BaseModel):
    data: list[WorkflowPublic]
    count: int


@router.get("", response_model=WorkflowsPublic)
def list_workflows(_principal: PrincipalDep, container: ContainerDep) -> WorkflowsPublic:
    """The newest version of each registered workflow (built-ins plus
    `CAIRN_MODELS__WORKFLOWS_DIR`); older versions stay registered so runs started on them can
    finish."""
    registry = container.answers.engine.registry
    data = []
    for info in registry.list():
        spec = registry.get(info.name, info.version)
        steps = [StepPublic(id=s.id, type=s.type, model=getattr(s, "model", None), when=s.when) for s in spec.steps]
        data.append(
            WorkflowPublic(
                name=spec.name,
                version=spec.version,
                description=spec.description.strip(),
                inputs=spec.inputs,
                steps=steps,
            )
        )
    return WorkflowsPublic(data=data, count=len(data))
