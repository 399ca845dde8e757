"""Parsed expressions and templates: the objects the plan loader and scheduler hold."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias, cast

from claude_runner.errors import ExpressionError
from claude_runner.expr.bounds import MAX_EXPRESSION_CHARS, MAX_VALUE_CHARS, Budget, Failure
from claude_runner.expr.evaluator import Functions, State, evaluate
from claude_runner.expr.nodes import Node, Path, function_names, references, unparse
from claude_runner.expr.parser import parse_node
from claude_runner.expr.values import (
    BOOLEAN,
    NULL,
    NUMBER,
    kind,
    measure,
    to_text,
    too_large,
)

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
Quote = Callable[[str], str]

_NO_FUNCTIONS: Functions = MappingProxyType({})
OPEN, CLOSE = "${{", "}}"


@dataclass(frozen=True, slots=True)
class Expression:
    """One parsed expression. ``text`` is the text it was parsed from (for an
    expression inside a template, the whole template: error offsets refer to it) and
    ``start``/``end`` delimit the expression's own source in it."""

    text: str = field(repr=False)
    node: Node
    start: int = field(compare=False)
    end: int = field(compare=False)

    @property
    def source(self) -> str:
        return self.text[self.start : self.end]

    def __str__(self) -> str:
        """Canonical form: parsing it gives the same tree."""
        return unparse(self.node)

    def evaluate(
        self, context: Mapping[str, object], functions: Functions = _NO_FUNCTIONS
    ) -> JSONValue:
        """The expression's value over ``context`` (its roots: ``tasks``, ``item``...).

        ``functions`` binds ``always``/``success``/``failure`` for this evaluation; they
        are an error where unbound. The result may share lists and mappings with
        ``context``: treat it as read-only. Raises ExpressionError.
        """
        return self._evaluate(State(context, functions, Budget()))

    def _evaluate(self, state: State) -> JSONValue:
        value = evaluate(self.node, state, self.text)
        if kind(value) not in (NULL, BOOLEAN, NUMBER):
            try:
                if not isinstance(value, str):
                    measure(value, state.budget)  # lists, mappings, and non-JSON values
                elif len(value) > MAX_VALUE_CHARS:
                    raise too_large()
            except Failure as failure:
                raise ExpressionError(
                    failure.problem, text=self.text, offset=self.start, hint=failure.hint
                ) from None
        return cast(JSONValue, value)  # JSON data: its kind was checked just above

    def references(self) -> frozenset[Path]:
        """The context paths the expression reads, each cut before its first part
        that is not written in the text: ``tasks.a.output[0]`` gives
        ``('tasks', 'a', 'output', 0)``; ``tasks[item].x`` gives ``('tasks',)`` and
        ``('item',)``."""
        return references(self.node)

    def function_names(self) -> frozenset[str]:
        """The functions called, e.g. to tell a ``when`` that names a status function
        (``always()``...) from one that does not."""
        return function_names(self.node)


@dataclass(frozen=True, slots=True)
class Template:
    """Text with ``${{ expr }}`` parts. ``parts`` alternates literal text and
    expressions, in order; empty text parts are left out."""

    text: str = field(repr=False)
    parts: tuple[str | Expression, ...]

    @property
    def is_static(self) -> bool:
        """No ``${{ }}``: rendering returns the text unchanged."""
        return all(isinstance(part, str) for part in self.parts)

    @property
    def expressions(self) -> tuple[Expression, ...]:
        return tuple(part for part in self.parts if isinstance(part, Expression))

    @property
    def single_expression(self) -> Expression | None:
        """The expression when the template is exactly one ``${{ }}`` (surrounding
        whitespace allowed): ``for_each`` and ``when`` use its value, not its text."""
        expressions = self.expressions
        if len(expressions) != 1:
            return None
        if any(isinstance(part, str) and part.strip() for part in self.parts):
            return None
        return expressions[0]

    def references(self) -> frozenset[Path]:
        found: frozenset[Path] = frozenset()
        return found.union(*(e.references() for e in self.expressions))

    def function_names(self) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        return found.union(*(e.function_names() for e in self.expressions))

    def render(
        self,
        context: Mapping[str, object],
        functions: Functions = _NO_FUNCTIONS,
        quote: Quote | None = None,
    ) -> str:
        """The text with each ``${{ }}`` replaced by its value: a string as is, null
        as nothing, anything else as compact JSON. ``quote`` (``shlex.quote`` for a
        shell command) is applied to every substituted value; a value with a NUL
        character cannot be quoted for a command line and is an error then. One budget
        covers the whole rendering, and the substituted values together are at most
        1 MiB. Raises ExpressionError."""
        if len(self.parts) == 1 and isinstance(self.parts[0], str):
            return self.parts[0]
        state = State(context, functions, Budget())
        out: list[str] = []
        total = 0
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = evaluate(part.node, state, self.text)
            try:
                text = to_text(value, state.budget)
            except Failure as failure:
                raise ExpressionError(
                    failure.problem, text=self.text, offset=part.start, hint=failure.hint
                ) from None
            total += len(text)
            if total > MAX_VALUE_CHARS:
                raise ExpressionError(
                    f"the substituted values add up to more than {MAX_VALUE_CHARS:,} characters",
                    text=self.text,
                    offset=part.start,
                )
            if quote is not None:
                if "\0" in text:
                    raise ExpressionError(
                        "a value substituted into a command contains a NUL character",
                        text=self.text,
                        offset=part.start,
                    )
                text = quote(text)
            out.append(text)
        return "".join(out)


def parse_expression(text: str) -> Expression:
    """A bare expression (no ``${{ }}``), e.g. a ``when`` written without them."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"expression longer than {MAX_EXPRESSION_CHARS:,} characters", text=text, offset=0
        )
    node, _ = parse_node(text)
    return Expression(text, node, 0, len(text))


def parse_template(text: str) -> Template:
    """Text with ``${{ expr }}`` parts. There is no escape for a literal ``${{``:
    write ``${{ '${{' }}``, as in GitHub Actions."""
    if OPEN not in text:  # the common case, kept cheap: most prompts have no template
        return Template(text, (text,) if text else ())
    parts: list[str | Expression] = []
    position = 0
    while True:
        start = text.find(OPEN, position)
        if start < 0:
            break
        if start > position:
            parts.append(text[position:start])
        node, end = parse_node(text, start + len(OPEN), in_template=True)
        inner = text[start + len(OPEN) : end - len(CLOSE)]
        source_start = start + len(OPEN) + len(inner) - len(inner.lstrip())
        source_end = end - len(CLOSE) - (len(inner) - len(inner.rstrip()))
        parts.append(Expression(text, node, source_start, source_end))
        position = end
    if position < len(text):
        parts.append(text[position:])
    return Template(text, tuple(parts))


def parse_condition(text: str) -> Expression:
    """A ``when``: an expression written bare or as one ``${{ }}``. Text around the
    ``${{ }}`` is an error, not a string that is always true (GitHub Actions' trap)."""
    if OPEN not in text:
        return parse_expression(text)
    template = parse_template(text)
    expression = template.single_expression
    if expression is not None:
        return expression
    offset, position, seen = 0, 0, False
    for part in template.parts:
        if isinstance(part, str):
            if part.strip():
                offset = position + len(part) - len(part.lstrip())
                break
            position += len(part)
        elif seen:
            offset = text.rfind(OPEN, 0, part.start)
            break
        else:
            seen = True
            position = text.find(CLOSE, part.end) + len(CLOSE)
    raise ExpressionError(
        "a condition must be one expression",
        text=text,
        offset=offset,
        hint="write ${{ a && b }}, with no text or other ${{ }} around it",
    )
