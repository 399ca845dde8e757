"""A precedence-climbing parser from tokens to a syntax tree.

Grammar (GitHub Actions' expression syntax; loosest first)::

    expr     := or
    or       := and ('||' and)*
    and      := equality ('&&' equality)*
    equality := order (('==' | '!=') order)*
    order    := unary (('<' | '<=' | '>' | '>=') unary)*
    unary    := '!' unary | postfix
    postfix  := primary ('.' NAME | '[' expr ']')*
    primary  := NUMBER | STRING | 'true' | 'false' | 'null'
              | NAME '(' [expr (',' expr)*] ')' | NAME | '(' expr ')'

Recursion happens only where the text nests (parentheses, ``!``, calls, indexes), and the
nesting is checked against ``MAX_DEPTH`` before each step down, so no input can reach
Python's recursion limit. Operator chains are loops; the tree depth they produce is
checked too, because the evaluator recurses over the tree.
"""

from __future__ import annotations

import math

from claude_runner.errors import ExpressionError
from claude_runner.expr.bounds import MAX_DEPTH
from claude_runner.expr.functions import BUILTINS, CALLER_FUNCTIONS, FUNCTION_NAMES
from claude_runner.expr.lexer import END, NAME, NUMBER, STRING, Token, describe, tokenize
from claude_runner.expr.nodes import (
    AND,
    BINARY_PRECEDENCE,
    KEYWORDS,
    Call,
    Compare,
    Index,
    Literal,
    Logical,
    Member,
    Name,
    Node,
    Not,
    Prop,
)

_OPERAND = "expected an operand (a name, a literal, '(', '!' or a function call)"
_INDEXING = "index a list with a whole number (a[0]) and a mapping with a string (a['b'])"
# Token texts are unambiguous: an operator's text is never that of another kind (a
# string keeps its quotes), so the parser tests texts alone.


class _Parser:
    __slots__ = ("pos", "text", "tokens")

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.pos = 0

    def error(self, problem: str, offset: int, hint: str = "") -> ExpressionError:
        return ExpressionError(problem, text=self.text, offset=offset, hint=hint)

    def unexpected(self, token: Token, hint: str) -> ExpressionError:
        return self.error(f"unexpected {describe(token)}", token[2], hint)

    def too_deep(self, offset: int, hint: str = "") -> ExpressionError:
        return self.error(f"expression nested deeper than {MAX_DEPTH} levels", offset, hint)

    def parse(self) -> Node:
        first = self.tokens[0]
        if first[0] == END:
            hint = "write an expression, e.g. tasks.build.status == 'succeeded'"
            raise self.error("expected an expression", first[2], hint)
        node = self.binary(1, 1)
        token = self.tokens[self.pos]
        if token[0] != END:
            raise self.unexpected(token, "expected an operator or the end of the expression")
        return node

    def nest(self, nesting: int, token: Token) -> int:
        if nesting >= MAX_DEPTH:
            raise self.too_deep(token[2])
        return nesting + 1

    def binary(self, min_precedence: int, nesting: int) -> Node:
        left = self.unary(nesting)
        chain: Logical | None = None  # the && / || node this loop is extending
        tokens = self.tokens
        while True:
            _, op, offset = tokens[self.pos]
            precedence = BINARY_PRECEDENCE.get(op)
            if precedence is None or precedence < min_precedence:
                return left
            self.pos += 1
            right = self.binary(precedence + 1, nesting)
            if precedence > AND:
                depth = max(left.depth, right.depth) + 1
                left = Compare(op, left, right, offset, depth)
            elif chain is not None and chain.op == op and left is chain:
                depth = max(chain.depth, right.depth + 1)
                left = chain = Logical(op, (*chain.operands, right), chain.offset, depth)
            else:
                depth = max(left.depth, right.depth) + 1
                left = chain = Logical(op, (left, right), offset, depth)
            if depth > MAX_DEPTH:
                raise self.too_deep(offset, "split a long chain of comparisons with '&&'")

    def unary(self, nesting: int) -> Node:
        token = self.tokens[self.pos]
        if token[1] == "!":
            self.pos += 1
            operand = self.unary(self.nest(nesting, token))
            return Not(operand, token[2], operand.depth + 1)
        return self.postfix(nesting)

    def postfix(self, nesting: int) -> Node:
        base = self.primary(nesting)
        tokens = self.tokens
        token = tokens[self.pos]
        if token[1] != "." and token[1] != "[":
            return base
        parts: list[Prop | Index] = []
        depth = base.depth
        if isinstance(base, Member):  # '(a.b).c' is 'a.b.c'
            parts.extend(base.parts)
            base = base.base
        while True:
            self.pos += 1
            if token[1] == ".":
                kind, name, offset = tokens[self.pos]
                if kind != NAME:
                    raise self.unexpected(
                        tokens[self.pos],
                        "expected a property name after '.': one starts with a letter or "
                        "'_'; write a['1st'] for other keys and a[0] for list items",
                    )
                self.pos += 1
                parts.append(Prop(name, offset))
            else:
                index = self.binary(1, self.nest(nesting, token))
                self.expect("]", token)
                if isinstance(index, Literal):
                    self.check_literal_index(index)
                if isinstance(index, Literal) and isinstance(index.value, str):
                    parts.append(Prop(index.value, token[2]))  # a['b'] is a.b
                else:
                    depth = max(depth, index.depth)
                    parts.append(Index(index, token[2]))
            token = tokens[self.pos]
            if token[1] != "." and token[1] != "[":
                break
        if depth >= MAX_DEPTH:
            raise self.too_deep(parts[0].offset)
        return Member(base, tuple(parts), base.offset, depth + 1)

    def check_literal_index(self, index: Literal) -> None:
        value = index.value
        if isinstance(value, str):
            return
        if value is None or isinstance(value, bool) or value != int(value):
            shown = "null" if value is None else str(value).lower()
            raise self.error(f"{shown} cannot be an index", index.offset, _INDEXING)

    def expect(self, closing: str, opening: Token) -> None:
        token = self.tokens[self.pos]
        if token[1] == closing:
            self.pos += 1
            return
        where = ExpressionError.position(self.text, opening[2])
        raise self.unexpected(token, f"expected {closing!r} to close {opening[1]!r} at {where}")

    def primary(self, nesting: int) -> Node:
        token = self.tokens[self.pos]
        kind, text, offset = token
        if kind == NAME:
            self.pos += 1
            if text in KEYWORDS:
                return Literal(KEYWORDS[text], offset)
            if self.tokens[self.pos][1] == "(":
                return self.call(token, nesting)
            return Name(text, offset)
        if kind == STRING:
            self.pos += 1
            return Literal(text[1:-1].replace("''", "'"), offset)
        if kind == NUMBER:
            self.pos += 1
            return Literal(self.number(text, offset), offset)
        if text == "(":
            self.pos += 1
            node = self.binary(1, self.nest(nesting, token))
            self.expect(")", token)
            return node
        raise self.unexpected(token, _OPERAND)

    def number(self, text: str, offset: int) -> int | float:
        digits = text.lstrip("-")
        if digits[:2] in ("0x", "0X"):
            value = int(digits, 16)
            return -value if text.startswith("-") else value
        if "." in text or "e" in text or "E" in text:
            number = float(text)
            if not math.isfinite(number):
                raise self.error(f"number {text} is out of range", offset)
            return number
        return int(text)

    def call(self, name: Token, nesting: int) -> Call:
        opening = self.tokens[self.pos]
        self.pos += 1
        inner = self.nest(nesting, opening)
        args: list[Node] = []
        if self.tokens[self.pos][1] != ")":
            args.append(self.binary(1, inner))
            while self.tokens[self.pos][1] == ",":
                self.pos += 1
                args.append(self.binary(1, inner))
        self.expect(")", opening)
        self.check_call(name, len(args))
        depth = max((a.depth for a in args), default=0) + 1
        return Call(name[1], tuple(args), name[2], depth)

    def check_call(self, name: Token, count: int) -> None:
        function = name[1]
        high: int | None
        if function in CALLER_FUNCTIONS:
            low, high, signature = 0, 0, f"{function}()"
        elif function in BUILTINS:
            builtin = BUILTINS[function]
            low, high, signature = builtin.min_args, builtin.max_args, builtin.signature
        else:
            raise self.error(f"unknown function {function!r}", name[2], _suggest(function))
        if count < low or (high is not None and count > high):
            if high is None:
                wanted = f"at least {low}"
            elif low == high:
                wanted = str(low)
            else:
                wanted = f"{low} or {high}"
            plural = "s" if (high if high is not None else low) != 1 else ""
            raise self.error(
                f"{function}() takes {wanted} argument{plural}, got {count}",
                name[2],
                f"use {signature}",
            )


def _suggest(function: str) -> str:
    folded = {name.lower(): name for name in FUNCTION_NAMES}
    if function.lower() in folded:
        return f"did you mean {folded[function.lower()]!r}? (names are case-sensitive)"
    import difflib  # noqa: PLC0415 - only on this error path: slow to import

    close = difflib.get_close_matches(function, FUNCTION_NAMES, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known functions: " + ", ".join(sorted(FUNCTION_NAMES, key=str.lower))


def parse_node(text: str, start: int = 0, *, in_template: bool = False) -> tuple[Node, int]:
    """The tree of the expression at ``start`` and the offset after it."""
    tokens, end = tokenize(text, start, in_template=in_template)
    return _Parser(text, tokens).parse(), end
