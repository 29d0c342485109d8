from __future__ import annotations

import pytest

from orchestration.errors import WorkflowSpecError
from orchestration.workflows.registry import WorkflowRegistry, list_workflows
from orchestration.workflows.spec import parse_spec

pytestmark = pytest.mark.unit

BASE = """
name: demo
version: 2
steps:
  - id: gather
    type: gather
  - id: answer
    type: generate
    context: gather
    cite: true
output: [answer]
"""


def test_parses_and_exposes_steps() -> None:
    spec = parse_spec(BASE)
    assert (spec.name, spec.version) == ("demo", 2)
    assert [s.type for s in spec.steps] == ["gather", "generate"]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("name: x\nversion: 1\nsteps: []\noutput: [a]", "steps"),
        (BASE.replace("context: gather", "context: answer"), "earlier step"),
        (BASE.replace("type: gather", "type: teleport"), "type"),
        (BASE + "\nunknown: 1", "unknown"),
        (BASE.replace("output: [answer]", "output: [nope]"), "unknown step"),
        (BASE.replace("id: answer", "id: gather"), "used twice"),
        ("steps: [", "YAML"),
        (
            BASE.replace(
                "output: [answer]",
                "  - id: b\n    type: branch\n    cases: [{when: 'true', goto: gather}]\noutput: [answer]",
            ),
            "forward",
        ),
        (BASE.replace("type: gather", "type: gather\n    when: \"__import__('os')\""), "other than len"),
        (BASE.replace("type: gather", 'type: gather\n    when: "inputs.__class__"'), "private"),
    ],
)
def test_refuses_broken_specs_with_a_clear_message(yaml_text: str, message: str) -> None:
    with pytest.raises(WorkflowSpecError, match=message):
        parse_spec(yaml_text)


def test_builtins_listed_and_versions_coexist() -> None:
    names = {w.name for w in list_workflows()}
    assert {"grounded_qa", "support_assistant"} <= names
    registry = WorkflowRegistry.builtin()
    registry.register(parse_spec(BASE))
    registry.register(parse_spec(BASE.replace("version: 2", "version: 1")))
    assert registry.get("demo").version == 2
    assert registry.get("demo", 1).version == 1
    with pytest.raises(Exception, match="known: demo, grounded_qa"):
        registry.get("missing")
