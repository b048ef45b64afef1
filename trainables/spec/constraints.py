"""`constraints:` comparisons over a trial's hyperparameters and its model's size, parsed without eval.

Only numbers, names, arithmetic (+ - * / // % **, unary minus) and comparisons (< <= > >= == !=,
chained, joined by `and`) are accepted; anything else (calls, attributes, subscripts, lambdas,
strings) is refused naming the constraint. A constraint's violation is 0 when it holds, else how far
it is from holding (Optuna's constraints: a value > 0 is infeasible).
"""
from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from typing import Any, Mapping

MAX_TEXT = 500
MAX_NODES = 200
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMP = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)


class ConstraintError(ValueError):
    """A constraint that cannot be read, or evaluated (unknown name, division by zero, overflow)."""


@dataclass(frozen=True)
class Constraint:
    text: str
    tree: ast.Expression
    names: frozenset[str]

    @classmethod
    def parse(cls, text: Any) -> "Constraint":
        if not isinstance(text, str) or not text.strip():
            raise ConstraintError(f"expected an expression such as 'total_params <= 2e6', got {text!r}")
        if len(text) > MAX_TEXT:
            raise ConstraintError(f"longer than {MAX_TEXT} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise ConstraintError(f"not an expression: {e.msg}") from None
        nodes = list(ast.walk(tree))
        if len(nodes) > MAX_NODES:
            raise ConstraintError(f"more than {MAX_NODES} parts")
        names = set()
        for node in nodes:
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif not isinstance(node, (ast.Expression, ast.Compare, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Constant,
                                       ast.Load, ast.USub, ast.UAdd, ast.And, *_BIN, *_CMP)):
                raise ConstraintError(f"only numbers, names, arithmetic and comparisons are allowed, not "
                                      f"{ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__}")
            elif isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                                     or not isinstance(node.value, (int, float))):
                raise ConstraintError(f"only numbers are allowed as constants, not {node.value!r}")
        if not _is_condition(tree.body):
            raise ConstraintError("must compare, e.g. 'total_params <= 2e6' (a bare quantity is no constraint)")
        return cls(text.strip(), tree, frozenset(names))

    def violation(self, values: Mapping[str, Any]) -> float:
        """0 when the constraint holds, else by how much it fails (ConstraintError if it cannot be computed)."""
        try:
            return float(_violation(self.tree.body, values))
        except ConstraintError:
            raise
        except (ArithmeticError, ValueError, TypeError) as e:
            raise ConstraintError(f"{self.text}: {e}") from None


def _is_condition(node: ast.AST) -> bool:
    if isinstance(node, ast.BoolOp):
        return isinstance(node.op, ast.And) and all(_is_condition(v) for v in node.values)
    return isinstance(node, ast.Compare)


def _violation(node: ast.AST, values: Mapping[str, Any]) -> float:
    if isinstance(node, ast.BoolOp):  # and: every part must hold
        return sum(_violation(v, values) for v in node.values)
    assert isinstance(node, ast.Compare)
    total, left = 0.0, _value(node.left, values)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _value(right_node, values)
        if isinstance(op, (ast.Lt, ast.LtE)):
            gap = left - right
            total += max(0.0, gap) + (1.0 if isinstance(op, ast.Lt) and gap == 0 else 0.0)
        elif isinstance(op, (ast.Gt, ast.GtE)):
            gap = right - left
            total += max(0.0, gap) + (1.0 if isinstance(op, ast.Gt) and gap == 0 else 0.0)
        elif isinstance(op, ast.Eq):
            total += abs(left - right)
        else:
            total += 1.0 if left == right else 0.0
        left = right
    return total


def _value(node: ast.AST, values: Mapping[str, Any]) -> float:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise ConstraintError(f"unknown name {node.id!r}")
        v = values[node.id]
        if isinstance(v, bool):
            return int(v)
        if not isinstance(v, (int, float)):
            raise ConstraintError(f"{node.id} is {v!r}, not a number")
        return v
    if isinstance(node, ast.UnaryOp):
        v = _value(node.operand, values)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = _value(node.left, values), _value(node.right, values)
        if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 1e12):
            raise ConstraintError("a power this large is not a size")  # 10**10**10 would never finish
        out = _BIN[type(node.op)](a, b)
        if isinstance(out, complex) or not math.isfinite(out):
            raise ConstraintError(f"{ast.unparse(node)} is not a finite number")
        return out
    raise ConstraintError(f"cannot evaluate {ast.unparse(node)}")
