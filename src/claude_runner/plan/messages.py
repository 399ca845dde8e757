"""pydantic's validation errors as messages that say what is wrong and how to fix it.

Values are quoted cut to a few dozen characters (``rules.echo``): a 5,000-digit number or
a megabyte of text is never echoed whole.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from claude_runner.plan.rules import echo

Loc = tuple[str | int, ...]


def describe(value: object) -> str:  # noqa: PLR0911
    """A value for a message: what it is, and a short quote of it."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"{echo(value)} (a number)"
    if isinstance(value, str):
        return f"the string {echo(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{echo(value)} (a {type(value).__name__})"


def unknown_key(key: str, allowed: Sequence[str], hint: str = "") -> str:
    text = f"unknown key {echo(key)}"
    close = difflib.get_close_matches(key.lower()[:100], allowed, n=1, cutoff=0.6)
    if hint:
        text += hint
    elif close:
        text += f" (did you mean {close[0]!r}?)"
    if allowed:
        text += f"; allowed here: {', '.join(allowed)}"
    return text


MISSING_HINTS = {
    "version": "; add version: v2 (or v1)",
    "stages": "; add stages: with at least one stage",
    "tasks": "; add tasks: with at least one task",
}


def _too_long(last: object, ctx: Mapping[str, Any]) -> str:
    limit = ctx.get("max_length")
    what = {"stages": "stages", "tasks": "tasks"}.get(str(last), "items")
    return f"more than {limit} {what}; a plan holds at most {limit}"


def message(err: Mapping[str, Any], loc: Loc) -> tuple[Loc, str]:  # noqa: PLR0911, PLR0912
    """The location to report and the message for one pydantic error (not extra keys)."""
    kind, value, last = err["type"], err.get("input"), loc[-1] if loc else ""
    raw_ctx = err.get("ctx")
    ctx: Mapping[str, Any] = raw_ctx if isinstance(raw_ctx, dict) else {}
    if kind == "missing":
        return loc[:-1], f"missing required key {last!r}" + MISSING_HINTS.get(str(last), "")
    if kind == "literal_error" and loc == ("version",):
        return loc, f"{describe(value)} is not a plan version; use v1 or v2"
    if kind == "literal_error":
        text = f"{describe(value)} is not allowed; use {ctx.get('expected')}"
        if last == "verbosity":
            text += " (or an alias: json for v, stream-json or stream_json for vv)"
        return loc, text
    if kind == "string_type":
        hint = (
            "; put it in quotes" if value is not None and not isinstance(value, list | dict) else ""
        )
        return loc, f"expected a string, got {describe(value)}{hint}"
    if kind == "bool_type":
        return loc, f"expected true or false, got {describe(value)}"
    if kind == "int_type":
        return loc, f"expected a whole number, got {describe(value)}"
    if kind == "greater_than_equal" and ctx.get("ge") == 1:
        return loc, f"must be a positive whole number (at least 1), got {echo(value)}"
    if kind == "greater_than_equal":
        return loc, f"must be at least {ctx.get('ge')}, got {echo(value)}"
    if kind == "less_than_equal":
        return loc, f"must be at most {ctx.get('le')}, got {echo(value)}"
    if kind == "wrong_type":
        return loc, f"{err['msg']}, got {describe(value)}"
    if kind in ("blank", "not_json", "bad_json_schema"):
        name = next((p for p in reversed(loc) if isinstance(p, str)), "the value")
        item = " item" if loc and isinstance(loc[-1], int) else ""
        return loc, f"{name}{item} {err['msg']}"
    if kind == "too_short":
        what = "stage" if last == "stages" else "task"
        return loc, f"{last} is empty; list at least one {what}"
    if kind == "too_long":
        return loc, _too_long(last, ctx)
    if kind == "list_type":
        return loc, f"expected a list, got {describe(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return loc, f"expected a mapping, got {describe(value)}"
    return loc, str(err["msg"])
