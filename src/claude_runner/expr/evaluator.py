"""Evaluating a syntax tree over a JSON context.

The evaluator reads only plain data: mapping keys and list items, never Python
attributes, and calls only the built-ins and the functions the caller binds. Recursion
follows the tree, whose depth the parser bounds; every node costs one step of the
budget. Problems raised below (``Failure``) get the offset of the innermost node that
saw them and leave as one ``ExpressionError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from claude_runner.errors import ExpressionError
from claude_runner.expr.bounds import Budget, Failure
from claude_runner.expr.functions import BUILTINS, CALLER_FUNCTIONS
from claude_runner.expr.nodes import (
    Call,
    Compare,
    Index,
    Literal,
    Logical,
    Member,
    Name,
    Node,
    Not,
)
from claude_runner.expr.values import (
    OTHER,
    is_number,
    json_equal,
    kind,
    kind_name,
    not_json,
    truthy,
)

Functions = Mapping[str, Callable[[], object]]
_Ordered = TypeVar("_Ordered", str, float)
_INDEXING = "index a list with a whole number (a[0]) and a mapping with a string (a['b'])"


class State:
    """What one evaluation carries: the context, the bound functions, the budget."""

    __slots__ = ("budget", "context", "functions")

    def __init__(self, context: Mapping[str, object], functions: Functions, budget: Budget) -> None:
        self.context = context
        self.functions = functions
        self.budget = budget


def evaluate(node: Node, state: State, text: str) -> object:
    """The value of ``node``; ``text`` is what its offsets refer to, for errors."""
    try:
        return _eval(node, state)
    except Failure as failure:
        offset = failure.offset if failure.offset is not None else node.offset
        raise ExpressionError(
            failure.problem, text=text, offset=offset, hint=failure.hint
        ) from None


def _eval(node: Node, state: State) -> object:  # noqa: PLR0911 - the node switch
    budget = state.budget
    budget.left -= 1
    try:
        if budget.left < 0:
            budget.charge(0)
        # Exact type tests, most frequent first: faster than an isinstance chain or a
        # dispatch table, and mypy narrows on them.
        if type(node) is Member:
            return _member(node, state)
        if type(node) is Literal:
            return node.value
        if type(node) is Compare:
            return _compare(node, state)
        if type(node) is Logical:
            return _logical(node, state)
        if type(node) is Name:
            return state.context.get(node.name)
        if type(node) is Call:
            return _call(node, state)
        if type(node) is Not:
            return not truthy(_eval(node.operand, state))
        raise TypeError(f"not a syntax node: {node!r}")
    except Failure as failure:
        if failure.offset is None:
            failure.offset = node.offset
        raise


def _member(node: Member, state: State) -> object:
    value = _eval(node.base, state)
    for part in node.parts:
        key = _eval(part.index, state) if isinstance(part, Index) else part.name
        try:
            value = _step(value, key, isinstance(part, Index))
        except Failure as failure:
            failure.offset = part.offset
            raise
    return value


def _step(value: object, key: object, bracket: bool) -> object:
    """``value[key]``: null when absent (GitHub Actions' rule), an error when the
    access makes no sense for the kinds involved."""
    if type(value) is dict and type(key) is str:  # the usual case
        return value.get(key)
    if isinstance(value, dict):
        if not isinstance(key, str):
            raise Failure(f"a mapping is indexed by a string, got {kind_name(key)}", _INDEXING)
        return value.get(key)
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if not bracket:
            raise Failure(
                f"cannot read property {key!r} of a list", "index a list with a number: a[0]"
            )
        if not is_number(key):
            raise Failure(f"a list is indexed by a whole number, got {kind_name(key)}", _INDEXING)
        index = int(key)
        if index != key:
            raise Failure("a list is indexed by a whole number, got a fraction", _INDEXING)
        return value[index] if 0 <= index < len(value) else None
    if kind(value) == OTHER:
        raise not_json()
    what = "an index" if bracket else f"property {key!r}"
    raise Failure(f"cannot read {what} of a {kind_name(value)}")


def _call(node: Call, state: State) -> object:
    name = node.name
    args = [_eval(arg, state) for arg in node.args]
    builtin = BUILTINS.get(name)
    if builtin is not None:
        return builtin.run(args, state.budget)
    function = state.functions.get(name)
    if function is None:
        raise Failure(
            f"{name}() is not available here",
            f"{', '.join(f'{n}()' for n in CALLER_FUNCTIONS)} may be used only in 'when'",
        )
    return function()


def _compare(node: Compare, state: State) -> object:
    left = _eval(node.left, state)
    right = _eval(node.right, state)
    op = node.op
    if type(left) is str and type(right) is str and op in ("==", "!="):  # the usual case
        state.budget.charge_chars(min(len(left), len(right)))
        return (left == right) is (op == "==")
    if op == "==":
        return json_equal(left, right, state.budget)
    if op == "!=":
        return not json_equal(left, right, state.budget)
    if isinstance(left, str) and isinstance(right, str):
        state.budget.charge_chars(min(len(left), len(right)))
        return _order(op, left, right)
    if is_number(left) and is_number(right):
        return _order(op, left, right)
    if OTHER in (kind(left), kind(right)):
        raise not_json()
    raise Failure(
        f"cannot compare {kind_name(left)} with {kind_name(right)} using {op!r}",
        f"{op!r} compares two numbers or two strings",
    )


def _order(op: str, left: _Ordered, right: _Ordered) -> bool:
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _logical(node: Logical, state: State) -> object:
    """Short-circuit; the result is the operand that decided, as in GitHub Actions."""
    want = node.op == "||"
    value: object = None
    for operand in node.operands:
        value = _eval(operand, state)
        if truthy(value) is want:
            return value
    return value
