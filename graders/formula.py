"""The multi grader's `calculate_output`: a whitelisted arithmetic language parsed with `ast`, never eval'd."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping

FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}

_MAX_FORMULA_CHARS = 10_000
_MAX_POWER_EXPONENT = 1_000


class FormulaError(ValueError):
    """The formula does not parse or uses something outside the whitelist."""


class FormulaEvaluationError(ArithmeticError):
    """The formula parsed but its value cannot be computed (division by zero, log(0), ...)."""


class Formula:
    """A parsed formula; `names` are the variables it reads (sub-grader names)."""

    __slots__ = ("source", "_tree", "names")

    def __init__(self, source: str) -> None:
        if len(source) > _MAX_FORMULA_CHARS:
            raise FormulaError(f"formula longer than {_MAX_FORMULA_CHARS} characters")
        # `^` is power in OpenAI's formula language; `**` gives it the right precedence in Python's grammar.
        text = source.replace("^", "**").strip()
        if not text:
            raise FormulaError("formula is empty")
        try:
            tree = ast.parse(text, mode="eval").body
            names: set[str] = set()
            _check(tree, names)
        except SyntaxError as exc:
            raise FormulaError(f"cannot parse formula {source!r}: {exc.msg}") from None
        except (RecursionError, MemoryError, ValueError) as exc:
            if isinstance(exc, FormulaError):
                raise
            raise FormulaError(f"cannot parse formula: {type(exc).__name__}") from None
        self.source = source
        self._tree = tree
        self.names = frozenset(names)

    def evaluate(self, variables: Mapping[str, float]) -> float:
        """The formula's value; raises FormulaEvaluationError for math errors or unknown names."""
        try:
            value = float(_eval(self._tree, variables))
        except (ZeroDivisionError, OverflowError, ValueError, TypeError, RecursionError) as exc:
            raise FormulaEvaluationError(f"{type(exc).__name__}: {exc}") from None
        if not math.isfinite(value):
            raise FormulaEvaluationError(f"formula gave {value}")
        return value


def _check(node: ast.AST, names: set[str]) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise FormulaError(f"only numbers are allowed as constants, not {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise FormulaError(f"{node.id} is a function; call it like {node.id}(...)")
        names.add(node.id)
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed (use + - * / ^)")
        _check(node.left, names)
        _check(node.right, names)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed")
        _check(node.operand, names)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise FormulaError(f"only these functions are allowed: {', '.join(FUNCTIONS)}")
        if node.keywords or not node.args:
            raise FormulaError(f"{node.func.id}() takes positional arguments only")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise FormulaError("*args is not allowed")
            _check(arg, names)
    else:
        raise FormulaError(f"{type(node).__name__} is not allowed in a formula")


def _eval(node: ast.AST, variables: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant):
        value = node.value
        assert isinstance(value, (int, float))  # _check admits only numbers
        return value
    if isinstance(node, ast.Name):
        if node.id not in variables:
            raise ValueError(f"unknown name {node.id!r}")
        return variables[node.id]
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, variables)
        right = _eval(node.right, variables)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            return left / right
        if abs(right) > _MAX_POWER_EXPONENT:
            raise OverflowError("exponent too large")
        result: float | complex = float(left) ** right
        if isinstance(result, complex):
            raise ValueError("power of a negative number gave a complex result")
        return result
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, variables)
        return -value if isinstance(node.op, ast.USub) else value
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    args = [_eval(arg, variables) for arg in node.args]
    return float(FUNCTIONS[node.func.id](*args))
