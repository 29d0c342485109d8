from __future__ import annotations

import pytest

from orchestration.errors import WorkflowSpecError
from orchestration.workflows.expressions import ExpressionError, evaluate, render

pytestmark = pytest.mark.unit

ENV = {
    "inputs": {"question": "q?", "n": 3},
    "steps": {"gate": {"passed": False, "score": 0.4, "items": [1, 2]}},
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("not steps.gate.passed", True),
        ("steps.gate.score >= 0.5 or inputs.n > 2", True),
        ("steps['gate']['score'] < 0.5 and len(steps.gate.items) == 2", True),
        ("inputs.question in ['q?', 'x']", True),
        ("0 < steps.gate.score < 0.3", False),
        ("inputs.n * 2 - 1", 5),
        ("max(steps.gate.items)", 2),
        ("(steps.gate.score or 0) < 0.5", True),
        ("steps.gate.passed or 'fallback'", "fallback"),
        ("inputs.n and steps.gate.passed", False),
    ],
)
def test_evaluates_whitelisted_expressions(expr: str, expected: object) -> None:
    assert evaluate(expr, ENV) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "inputs.__class__",
        "(lambda: 1)()",
        "[x for x in inputs]",
        "open('/etc/passwd')",
        "inputs.get('question')",
    ],
)
def test_refuses_anything_outside_the_whitelist(expr: str) -> None:
    with pytest.raises(WorkflowSpecError):
        evaluate(expr, ENV)


def test_missing_data_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="no 'missing'"):
        evaluate("steps.missing.passed", ENV)
    with pytest.raises(ExpressionError, match="unknown name"):
        evaluate("secrets", ENV)


def test_render_templates() -> None:
    assert render("Q: {{ inputs.question }} ({{ inputs.n + 1 }})", ENV) == "Q: q? (4)"
