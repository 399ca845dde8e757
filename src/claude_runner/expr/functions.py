"""The built-in functions, and the names a caller binds (``always`` and friends).

Each built-in is strict about its argument kinds (no GitHub Actions coercion, and string
tests are case-sensitive) and charges the work it does to the evaluation's budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from claude_runner.expr.bounds import MAX_VALUE_CHARS, Budget, Failure
from claude_runner.expr.values import (
    from_json,
    json_equal,
    kind_name,
    to_json,
    to_text,
    too_large,
)

CALLER_FUNCTIONS = ("always", "success", "failure")
"""Bound by the caller for each evaluation (the scheduler: over a task's needs)."""


class Builtin(NamedTuple):
    signature: str
    min_args: int
    max_args: int | None  # None: any number
    run: Callable[[Sequence[object], Budget], object]


def _string(value: object, signature: str, what: str) -> str:
    if not isinstance(value, str):
        raise Failure(f"{signature}: {what} must be a string, got {kind_name(value)}")
    return value


def _contains(args: Sequence[object], budget: Budget) -> object:
    search, item = args
    if isinstance(search, str):
        budget.charge_chars(len(search))
        if not isinstance(item, str):
            raise Failure(
                "contains(search, item): item must be a string when search is a string, "
                f"got {kind_name(item)}"
            )
        return item in search
    if isinstance(search, list | tuple):
        if isinstance(item, str):  # a string equals only a string: C-speed 'in' is exact
            budget.charge(len(search))
            return item in search
        return any(json_equal(element, item, budget) for element in search)
    raise Failure(
        f"contains(search, item): search must be a string or a list, got {kind_name(search)}"
    )


def _affix(name: str, what: str, test: Callable[[str, str], bool]) -> Builtin:
    signature = f"{name}(text, {what})"

    def run(args: Sequence[object], budget: Budget) -> object:
        text = _string(args[0], signature, "text")
        affix = _string(args[1], signature, what)
        budget.charge_chars(len(affix))
        return test(text, affix)

    return Builtin(signature, 2, 2, run)


def _join(args: Sequence[object], budget: Budget) -> object:
    items = args[0]
    separator = _string(args[1], "join(list, separator)", "separator") if len(args) > 1 else ","
    if isinstance(items, str):
        return items
    if not isinstance(items, list | tuple):
        raise Failure(f"join(list, separator): list must be a list, got {kind_name(items)}")
    pieces: list[str] = []
    total = 0
    for item in items:
        budget.charge(1)
        piece = to_text(item, budget)
        total += len(piece) + len(separator)
        if total > MAX_VALUE_CHARS + len(separator):
            raise too_large()
        pieces.append(piece)
    budget.charge_chars(total)
    return separator.join(pieces)


def _to_json(args: Sequence[object], budget: Budget) -> object:
    return to_json(args[0], budget)


def _from_json(args: Sequence[object], budget: Budget) -> object:
    return from_json(_string(args[0], "fromJSON(text)", "text"), budget)


def _length(args: Sequence[object], budget: Budget) -> object:
    value = args[0]
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise Failure(
        f"length(value): value must be a string, a list or a mapping, got {kind_name(value)}"
    )


_FORMAT_TOKEN = re.compile(r"\{\{|\}\}|\{(\d+)\}|[{}]")


def _format(args: Sequence[object], budget: Budget) -> object:
    template = _string(args[0], "format(text, values...)", "text")
    values = args[1:]
    texts: dict[int, str] = {}
    out: list[str] = []
    total = 0
    position = 0
    for match in _FORMAT_TOKEN.finditer(template):
        budget.charge(1)
        out.append(template[position : match.start()])
        token = match.group()
        if token in ("{{", "}}"):
            out.append(token[0])
        elif match.group(1) is None:
            raise Failure(
                f"format(text, values...): unmatched {token!r} at position "
                f"{match.start() + 1} of the text",
                "write '{{' or '}}' for a literal brace",
            )
        else:
            number = int(match.group(1))
            if number >= len(values):
                given = f"{len(values)} value{'s' if len(values) != 1 else ''}"
                raise Failure(f"format(text, values...): {{{number}}} has no value ({given})")
            if number not in texts:
                texts[number] = to_text(values[number], budget)
            out.append(texts[number])
            total += len(texts[number])
            if total > MAX_VALUE_CHARS:
                raise too_large()
        position = match.end()
    out.append(template[position:])
    budget.charge_chars(len(template) + total)
    return "".join(out)


BUILTINS: dict[str, Builtin] = {
    "contains": Builtin("contains(search, item)", 2, 2, _contains),
    "startsWith": _affix("startsWith", "prefix", str.startswith),
    "endsWith": _affix("endsWith", "suffix", str.endswith),
    "join": Builtin("join(list, separator)", 1, 2, _join),
    "toJSON": Builtin("toJSON(value)", 1, 1, _to_json),
    "fromJSON": Builtin("fromJSON(text)", 1, 1, _from_json),
    "length": Builtin("length(value)", 1, 1, _length),
    "format": Builtin("format(text, values...)", 1, None, _format),
}
FUNCTION_NAMES = (*BUILTINS, *CALLER_FUNCTIONS)
