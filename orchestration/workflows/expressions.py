"""A small, safe expression language for workflow conditions and prompt templates.

Workflow specs are data an operator uploads, so they must never reach `eval()`. Expressions are
parsed with `ast` and only a whitelist is interpreted: literals, names bound by the engine
(`inputs`, `steps`), attribute / subscript lookups into dicts and lists, comparisons, boolean
logic, arithmetic on numbers, and `len()`. Everything else is refused when the spec is loaded.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from orchestration.errors import WorkflowSpecError

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"len": len, "min": min, "max": max}
_TEMPLATE = re.compile(r"\{\{(.+?)\}\}", re.DOTALL)


class ExpressionError(ValueError):
    """An expression could not be evaluated against the run's data (missing key, bad type)."""


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> ast.Expression:
    """Parse and whitelist-check; raises WorkflowSpecError naming the offending construct."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise WorkflowSpecError(f"invalid expression {source!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        allowed = isinstance(
            node,
            ast.Expression | ast.BoolOp | ast.UnaryOp | ast.Compare | ast.BinOp | ast.Constant | ast.Name
            | ast.Attribute | ast.Subscript | ast.List | ast.Tuple | ast.Load | ast.And | ast.Or | ast.Not
            | ast.USub | ast.Call | ast.cmpop | ast.Add | ast.Sub | ast.Mult | ast.Div | ast.Slice,
        )  # fmt: skip
        if not allowed:
            raise WorkflowSpecError(f"expression {source!r} uses {type(node).__name__}, which is not allowed")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords
        ):
            raise WorkflowSpecError(f"expression {source!r} calls something other than len/min/max")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise WorkflowSpecError(f"expression {source!r} reads a private attribute")
    return tree


def evaluate(source: str, env: Mapping[str, Any]) -> Any:
    return _eval(compile_expression(source).body, env)


def _lookup(container: Any, key: Any) -> Any:
    try:
        if isinstance(container, Mapping):
            return container[key]
        if isinstance(container, list | tuple | str) and isinstance(key, int | slice):
            return container[key]
    except (KeyError, IndexError):
        raise ExpressionError(f"no {key!r} in the run data") from None
    raise ExpressionError(f"cannot look up {key!r} in a {type(container).__name__}")


def _eval(node: ast.expr, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        if node.id not in env:
            raise ExpressionError(f"unknown name {node.id!r}; use inputs.* or steps.*")
        return env[node.id]
    if isinstance(node, ast.Attribute):
        return _lookup(_eval(node.value, env), node.attr)
    if isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Slice):
            lo = _eval(node.slice.lower, env) if node.slice.lower else None
            hi = _eval(node.slice.upper, env) if node.slice.upper else None
            return _lookup(_eval(node.value, env), slice(lo, hi))
        return _lookup(_eval(node.value, env), _eval(node.slice, env))
    if isinstance(node, ast.BoolOp):  # Python semantics: short-circuit, value of the last operand
        is_and = isinstance(node.op, ast.And)
        value: Any = None
        for operand in node.values:
            value = _eval(operand, env)
            if bool(value) != is_and:
                return value
        return value
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, env)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError as exc:
                raise ExpressionError(f"cannot compare {left!r} and {right!r}") from exc
            left = right
        return True
    if isinstance(node, ast.BinOp):
        try:
            return _BINARY[type(node.op)](_eval(node.left, env), _eval(node.right, env))
        except (TypeError, ZeroDivisionError) as exc:
            raise ExpressionError(str(exc)) from exc
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            return _FUNCTIONS[node.func.id](*(_eval(a, env) for a in node.args))
        except (TypeError, ValueError) as exc:
            raise ExpressionError(str(exc)) from exc
    raise ExpressionError(f"unsupported expression node {type(node).__name__}")


def check_template(template: str) -> None:
    for m in _TEMPLATE.finditer(template):
        compile_expression(m.group(1))


def render(template: str, env: Mapping[str, Any]) -> str:
    """`{{ expr }}` placeholders replaced by their values (missing values raise)."""

    def one(m: re.Match[str]) -> str:
        value = evaluate(m.group(1), env)
        return "" if value is None else str(value)

    return _TEMPLATE.sub(one, template)
