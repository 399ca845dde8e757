"""JSON values as the expression language sees them: kinds, truthiness, equality, text.

Values are plain Python data: ``None``, ``bool``, ``int``, finite ``float``, ``str``,
``list`` (or ``tuple``) and ``dict`` with string keys. Anything else found in a context
is "not a JSON value" and any use of it is an error. Deep or large values are walked
iteratively, so no value can exhaust the Python stack, and every walk is charged to the
evaluation's ``Budget``.
"""

from __future__ import annotations

import json
from typing import TypeGuard

from claude_runner.expr.bounds import (
    MAX_LIST_ITEMS,
    MAX_VALUE_CHARS,
    MAX_VALUE_DEPTH,
    Budget,
    Failure,
)

NULL, BOOLEAN, NUMBER, STRING, LIST, MAPPING, OTHER = range(7)
KIND_NAMES = ("null", "boolean", "number", "string", "list", "mapping", "non-JSON value")


def kind(value: object) -> int:  # noqa: PLR0911 - one flat type switch
    """One of the kind constants; exact types first because they are by far the usual."""
    if value is None:
        return NULL
    cls = type(value)
    if cls is str:
        return STRING
    if cls is bool:
        return BOOLEAN
    if cls is int:
        return NUMBER
    if cls is dict:
        return MAPPING
    if cls is list or cls is tuple:
        return LIST
    # Floats (NaN and infinities are not JSON numbers), and subclasses: an IntEnum, a
    # str enum, an OrderedDict keep their base kind.
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return NUMBER
    if isinstance(value, float):
        return NUMBER if value - value == 0.0 else OTHER  # x - x is 0.0 only for finite x
    if isinstance(value, str):
        return STRING
    if isinstance(value, dict):
        return MAPPING
    if isinstance(value, list | tuple):
        return LIST
    return OTHER


def kind_name(value: object) -> str:
    return KIND_NAMES[kind(value)]


def is_number(value: object) -> TypeGuard[int | float]:
    return kind(value) == NUMBER


def not_json() -> Failure:
    return Failure("the context holds a value that is not JSON data")


def truthy(value: object) -> bool:
    """GitHub Actions' truthiness: null, false, 0 and '' are false; everything else,
    including an empty list or mapping, is true. Raises ``Failure`` for a value that is
    not JSON, which an ``Expression.evaluate()`` result never is."""
    k = kind(value)
    if k == OTHER:
        raise not_json()
    if k in (LIST, MAPPING):
        return True
    return bool(value)


def json_equal(left: object, right: object, budget: Budget) -> bool:
    """JSON equality: numbers by value (1 == 1.0), no coercion across kinds (true != 1,
    '1' != 1), lists item by item, mappings by keys and values. Iterative."""
    pending: list[tuple[object, object]] = [(left, right)]
    while pending:
        a, b = pending.pop()
        budget.charge(1)
        ka, kb = kind(a), kind(b)
        if OTHER in (ka, kb):
            raise not_json()
        if ka != kb:
            return False
        if isinstance(a, str):
            budget.charge_chars(len(a))
            if a != b:
                return False
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            pending.extend((a[key], b[key]) for key in a)
        elif a != b:
            return False
    return True


def measure(value: object, budget: Budget) -> int:
    """About how many characters ``value`` takes as compact JSON; raises if it breaks a
    bound (size, list length, nesting) or is not JSON. Iterative, stops at the bound."""
    size = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        budget.charge(1)
        k = kind(item)
        if k == OTHER:
            raise not_json()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, list | tuple | dict):
            size += _open_container(item, depth, pending)
        elif k == NUMBER and isinstance(item, int):
            size += item.bit_length() // 3 + 2
        else:
            size += 24  # a float, a boolean, null: at most this long
        if size > MAX_VALUE_CHARS:
            raise too_large()
    return size


def _open_container(
    item: list[object] | tuple[object, ...] | dict[object, object],
    depth: int,
    pending: list[tuple[object, int]],
) -> int:
    """Queue the children of a list or mapping for ``measure``; its own characters."""
    if depth > MAX_VALUE_DEPTH:
        raise Failure(f"a value is nested deeper than {MAX_VALUE_DEPTH} levels")
    size = 2 + len(item)
    if isinstance(item, dict):
        for key, child in item.items():
            if not isinstance(key, str):
                raise not_json()
            size += len(key) + 3
            pending.append((child, depth + 1))
    else:
        if len(item) > MAX_LIST_ITEMS:
            raise Failure(
                f"a list has {len(item):,} items, more than the limit of {MAX_LIST_ITEMS:,}"
            )
        pending.extend((child, depth + 1) for child in item)
    return size


def too_large() -> Failure:
    return Failure(f"a value is larger than the limit of 1 MiB ({MAX_VALUE_CHARS:,} characters)")


def to_json(value: object, budget: Budget) -> str:
    """Compact JSON (no spaces, non-ASCII kept), checked against the bounds first."""
    measure(value, budget)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError):  # an int too long to print; odd keys
        raise Failure("a value cannot be written as JSON") from None
    budget.charge_chars(len(text))
    if len(text) > MAX_VALUE_CHARS:
        raise too_large()
    return text


def to_text(value: object, budget: Budget) -> str:
    """A value rendered into text: a string as is, null as nothing, anything else as
    compact JSON (``true``, ``3``, ``1.5``, ``["a","b"]``)."""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise too_large()
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return to_json(value, budget)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def from_json(text: str, budget: Budget) -> object:
    """Strict JSON (no NaN or Infinity), bounded like any result."""
    if len(text) > MAX_VALUE_CHARS:
        raise too_large()
    budget.charge_chars(len(text))
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # the C scanner's own depth guard: safe to catch here
        raise Failure(f"a value is nested deeper than {MAX_VALUE_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError's text names a position, not content
        raise Failure(f"fromJSON() got a string that is not JSON ({err})") from None
    measure(value, budget)
    return value
