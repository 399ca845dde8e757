"""The syntax tree of an expression, and the printer that turns it back into text.

Nodes are immutable by convention; ``offset`` (where the node starts in the parsed
text, or for an operator where the operator is) and ``depth`` do not take part in
equality, so two trees are equal when they mean the same. Chains are flat: ``a.b[0].c`` is one
``Member`` with three parts and ``a || b || c`` one ``Logical`` with three operands, so
ordinary expressions stay shallow. ``a['b']`` is the same tree as ``a.b``.
"""

from __future__ import annotations

import re

Scalar = bool | int | float | str | None
PathPart = str | int
Path = tuple[PathPart, ...]

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
KEYWORDS = {"true": True, "false": False, "null": None}

# Binding strength, loosest first (GitHub Actions' order).
OR, AND, EQUALITY, ORDER, UNARY, POSTFIX, PRIMARY = range(1, 8)
BINARY_PRECEDENCE = {
    "||": OR,
    "&&": AND,
    "==": EQUALITY,
    "!=": EQUALITY,
    "<": ORDER,
    "<=": ORDER,
    ">": ORDER,
    ">=": ORDER,
}


class _Node:
    """Equality, hashing and repr over ``_fields``, the fields that carry meaning.

    Plain classes rather than dataclasses: a plan holds thousands of nodes and the
    package is imported at start-up, and a dataclass costs about a millisecond to
    create and three times as much per instance when frozen. Nodes are never changed
    after the parser builds them.
    """

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name in self._fields
        )

    def __hash__(self) -> int:
        return hash((type(self), *(getattr(self, name) for name in self._fields)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"


class Literal(_Node):
    __slots__ = ("depth", "offset", "value")
    _fields = ("value",)

    def __init__(self, value: Scalar, offset: int = 0, depth: int = 1) -> None:
        self.value = value
        self.offset = offset
        self.depth = depth

    def __eq__(self, other: object) -> bool:  # true is not 1, 1 is not 1.0
        return (
            type(other) is Literal
            and type(self.value) is type(other.value)
            and self.value == other.value
        )

    def __hash__(self) -> int:
        return hash((Literal, type(self.value), self.value))


class Name(_Node):
    """A context root: ``tasks``, ``item``, ``run``..."""

    __slots__ = ("depth", "name", "offset")
    _fields = ("name",)

    def __init__(self, name: str, offset: int = 0, depth: int = 1) -> None:
        self.name = name
        self.offset = offset
        self.depth = depth


class Prop(_Node):
    """``.name`` or ``['name']``: a static key."""

    __slots__ = ("name", "offset")
    _fields = ("name",)

    def __init__(self, name: str, offset: int = 0) -> None:
        self.name = name
        self.offset = offset


class Index(_Node):
    """``[expr]`` for any index but a string literal."""

    __slots__ = ("index", "offset")
    _fields = ("index",)

    def __init__(self, index: Node, offset: int = 0) -> None:
        self.index = index
        self.offset = offset


class Member(_Node):
    __slots__ = ("base", "depth", "offset", "parts")
    _fields = ("base", "parts")

    def __init__(
        self, base: Node, parts: tuple[Prop | Index, ...], offset: int = 0, depth: int = 1
    ) -> None:
        self.base = base
        self.parts = parts
        self.offset = offset
        self.depth = depth


class Call(_Node):
    __slots__ = ("args", "depth", "name", "offset")
    _fields = ("name", "args")

    def __init__(self, name: str, args: tuple[Node, ...], offset: int = 0, depth: int = 1) -> None:
        self.name = name
        self.args = args
        self.offset = offset
        self.depth = depth


class Not(_Node):
    __slots__ = ("depth", "offset", "operand")
    _fields = ("operand",)

    def __init__(self, operand: Node, offset: int = 0, depth: int = 1) -> None:
        self.operand = operand
        self.offset = offset
        self.depth = depth


class Compare(_Node):
    """``== != < <= > >=``; ``offset`` is the operator's."""

    __slots__ = ("depth", "left", "offset", "op", "right")
    _fields = ("op", "left", "right")

    def __init__(self, op: str, left: Node, right: Node, offset: int = 0, depth: int = 1) -> None:
        self.op = op
        self.left = left
        self.right = right
        self.offset = offset
        self.depth = depth


class Logical(_Node):
    """``&&`` or ``||`` over two or more operands; ``offset`` is the first operator's."""

    __slots__ = ("depth", "offset", "op", "operands")
    _fields = ("op", "operands")

    def __init__(
        self, op: str, operands: tuple[Node, ...], offset: int = 0, depth: int = 1
    ) -> None:
        self.op = op
        self.operands = operands
        self.offset = offset
        self.depth = depth


Node = Literal | Name | Member | Call | Not | Compare | Logical


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Member):
        return (node.base, *(p.index for p in node.parts if isinstance(p, Index)))
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, Logical):
        return node.operands
    return ()


def static_key(part: Prop | Index) -> PathPart | None:
    """The key of a part when it is written in the text, else None."""
    if isinstance(part, Prop):
        return part.name
    index = part.index
    if isinstance(index, Literal):
        value = index.value
        if isinstance(value, int | float) and not isinstance(value, bool) and value == int(value):
            return int(value)
    return None


def references(node: Node) -> frozenset[Path]:
    """Every context path the expression reads, each as far as it is static:
    ``tasks.a.output[0]`` gives ``('tasks', 'a', 'output', 0)``, ``tasks[x].y`` gives
    ``('tasks',)`` plus the references of ``x``."""
    found: set[Path] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, Name):
            found.add((current.name,))
        elif isinstance(current, Member) and isinstance(current.base, Name):
            path: list[PathPart] = [current.base.name]
            static = True
            for part in current.parts:
                key = static_key(part) if static else None
                if key is None:
                    static = False
                else:
                    path.append(key)
                if isinstance(part, Index):
                    pending.append(part.index)
            found.add(tuple(path))
        else:
            pending.extend(children(current))
    return frozenset(found)


def function_names(node: Node) -> frozenset[str]:
    found: set[str] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, Call):
            found.add(current.name)
        pending.extend(children(current))
    return frozenset(found)


# ---- printer -------------------------------------------------------------------------


def quote_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _literal(value: Scalar) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return quote_string(value)
    return repr(value)  # int, or a finite float: '1.5', '1e+100', '-0.0'


def _precedence(node: Node) -> int:
    if isinstance(node, Logical | Compare):
        return BINARY_PRECEDENCE[node.op]
    if isinstance(node, Not):
        return UNARY
    if isinstance(node, Member):
        return POSTFIX
    if isinstance(node, Literal) and type(node.value) in (int, float):
        return UNARY  # '1.x' would lex as a number: a number base gets parentheses
    return PRIMARY


def _part(part: Prop | Index) -> str:
    if isinstance(part, Index):
        return f"[{unparse(part.index)}]"
    if IDENTIFIER_RE.fullmatch(part.name):
        return "." + part.name
    return f"[{quote_string(part.name)}]"


def unparse(node: Node, min_precedence: int = 0) -> str:
    """Canonical text for ``node``: parsing it gives an equal tree. Recursion is
    bounded by the tree's depth, which the parser bounds."""
    if isinstance(node, Literal):
        text = _literal(node.value)
    elif isinstance(node, Name):
        text = node.name
    elif isinstance(node, Member):
        text = unparse(node.base, POSTFIX) + "".join(_part(p) for p in node.parts)
    elif isinstance(node, Call):
        text = f"{node.name}({', '.join(unparse(a) for a in node.args)})"
    elif isinstance(node, Not):
        text = "!" + unparse(node.operand, UNARY)
    elif isinstance(node, Compare):
        level = BINARY_PRECEDENCE[node.op]
        text = f"{unparse(node.left, level)} {node.op} {unparse(node.right, level + 1)}"
    else:
        level = BINARY_PRECEDENCE[node.op]
        text = f" {node.op} ".join(unparse(o, level + 1) for o in node.operands)
    return f"({text})" if _precedence(node) < min_precedence else text
