"""Where workflow specs come from: the built-ins shipped in `builtin/`, plus any an operator
registers (e.g. YAML files from a configured directory). Versions coexist: `get(name)` is the
newest, `get(name, version)` a specific one, so runs started on an old version can finish."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from core.errors import NotFound
from orchestration.workflows.spec import WorkflowSpec, parse_spec

BUILTIN_DIR = Path(__file__).parent / "builtin"


class WorkflowInfo(BaseModel):
    name: str
    version: int
    description: str
    inputs: list[str]
    steps: list[str]  # "id:type"


class WorkflowRegistry:
    def __init__(self, specs: list[WorkflowSpec] | None = None) -> None:
        self._specs: dict[tuple[str, int], WorkflowSpec] = {}
        for spec in specs or []:
            self.register(spec)

    @classmethod
    def builtin(cls, extra_dir: Path | None = None) -> WorkflowRegistry:
        registry = cls()
        for directory in [BUILTIN_DIR, *([extra_dir] if extra_dir else [])]:
            for path in sorted(directory.glob("*.y*ml")):
                registry.register(parse_spec(path.read_text(encoding="utf-8")))
        return registry

    def register(self, spec: WorkflowSpec) -> None:
        self._specs[(spec.name, spec.version)] = spec

    def get(self, name: str, version: int | None = None) -> WorkflowSpec:
        if version is not None:
            spec = self._specs.get((name, version))
        else:
            versions = [v for (n, v) in self._specs if n == name]
            spec = self._specs[(name, max(versions))] if versions else None
        if spec is None:
            known = ", ".join(sorted({n for n, _ in self._specs})) or "none"
            raise NotFound(
                f"no workflow {name!r}" + (f" version {version}" if version else "") + f"; known: {known}"
            )
        return spec

    def list(self) -> list[WorkflowInfo]:
        latest: dict[str, WorkflowSpec] = {}
        for (name, version), spec in sorted(self._specs.items()):
            if name not in latest or version > latest[name].version:
                latest[name] = spec
        return [
            WorkflowInfo(
                name=s.name,
                version=s.version,
                description=s.description,
                inputs=s.inputs,
                steps=[f"{st.id}:{st.type}" for st in s.steps],
            )
            for s in latest.values()
        ]


def list_workflows() -> list[WorkflowInfo]:
    """The built-in workflows (what `GET /v1/workflows` shows without extra specs)."""
    return WorkflowRegistry.builtin().list()
