"""A value that satisfies a JSON Schema: the stand-in model's default structured output.

Covers the keywords plans use for outputs: ``type`` (a list: its first non-null entry),
``const``, ``enum``, ``properties`` (every property is filled: a fan-out over a list
then has an item to fan out to), ``items``/``prefixItems``, ``minItems``/``maxItems``,
``uniqueItems``, ``minLength``/``maxLength``, common ``format``s, ``minimum``/
``maximum``/``exclusive*``/``multipleOf``, ``anyOf``/``oneOf`` (first branch),
``allOf`` (merged), local ``$ref``s (``#/$defs/...``, ``#/definitions/...``; deep in a
recursive schema only required parts are made).
``pattern`` and ``not`` are not solved. No dependency: the whole job is a few rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "rehearsal@example.com",
    "uri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}
_MAX_DEPTH = 32
# Below this nesting only what the schema requires is made: a recursive schema (a tree
# of optional children) ends instead of growing to _MAX_DEPTH.
_OPTIONAL_DEPTH = 8
_TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")


def example(schema: Any) -> Any:
    """A value valid against ``schema`` for the keywords listed in the module docstring."""
    return _Gen(schema if isinstance(schema, Mapping) else {}).value(schema, 0, 0)


class _Gen:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, schema: Any, depth: int) -> Mapping[str, Any]:
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            if depth > _MAX_DEPTH:
                return {}
            depth += 1
            target: Any = self.root
            ref = schema["$ref"]
            if not ref.startswith("#"):
                return {}
            for part in filter(None, ref[1:].split("/")):
                key = part.replace("~1", "/").replace("~0", "~")
                target = target.get(key) if isinstance(target, Mapping) else None
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, Mapping) else rest
        return schema if isinstance(schema, Mapping) else {}

    def value(self, raw: Any, index: int, depth: int) -> Any:
        """``index`` varies the value for items of a list with ``uniqueItems``."""
        if raw is True or depth > _MAX_DEPTH:
            return None
        schema = self.resolve(raw, depth)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[index % len(enum)]
        combined = self._combined(schema, depth)
        if combined is not None:
            return self.value(combined, index, depth + 1)
        return self._typed(schema, index, depth)

    def _typed(self, schema: Mapping[str, Any], index: int, depth: int) -> Any:
        kind = self._type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        scalar: Callable[[Mapping[str, Any], int], Any] = _SCALARS.get(kind or "", _null)
        return scalar(schema, index)

    def _combined(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any] | None:
        """``schema`` with its ``anyOf``/``oneOf`` first branch or ``allOf`` merged in."""
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k != key}
                return {**rest, **self.resolve(branches[0], depth)}
        if isinstance(schema.get("allOf"), list):
            return self._merge(schema, depth)
        return None

    def _merge(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            for key, value in self.resolve(part, depth).items():
                if key == "properties" and isinstance(value, Mapping):
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    @staticmethod
    def _type(schema: Mapping[str, Any]) -> str | None:
        kind = schema.get("type")
        if isinstance(kind, list):
            named = [k for k in kind if k != "null"] or kind
            kind = min(named, key=lambda k: _TYPE_ORDER.index(k) if k in _TYPE_ORDER else 99)
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return None

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        props: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
        required = [n for n in schema.get("required") or [] if isinstance(n, str)]
        result = {
            name: self.value(sub, 0, depth + 1)
            for name, sub in props.items()
            if depth < _OPTIONAL_DEPTH or name in required
        }
        for name in required:
            if name not in result:
                extra = schema.get("additionalProperties")
                result[name] = self.value(extra if isinstance(extra, Mapping) else {}, 0, depth + 1)
        return result

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix_items: list[Any] = prefix if isinstance(prefix, list) else []
        items = schema.get("items")
        low = schema.get("minItems")
        high = schema.get("maxItems")
        fill = 1 if depth < _OPTIONAL_DEPTH else 0
        count = max(low if isinstance(low, int) else fill, len(prefix_items))
        if items is False:
            count = len(prefix_items)
        if isinstance(high, int):
            count = min(count, high)
        return [
            self.value(prefix_items[i] if i < len(prefix_items) else items or {}, i, depth + 1)
            for i in range(count)
        ]


def _null(schema: Mapping[str, Any], index: int) -> None:
    return None


def _boolean(schema: Mapping[str, Any], index: int) -> bool:
    return True


def _string(schema: Mapping[str, Any], index: int) -> str:
    fmt = schema.get("format")
    known = fmt if isinstance(fmt, str) and fmt in _FORMATS else None
    text = _FORMATS[known] if known else "example"
    if index and not known:
        text = f"{text}-{index}"
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text += "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = (str(index) if index else text)[:high].ljust(high, "x")
    return text


def _number(schema: Mapping[str, Any], index: int, *, integer: bool) -> int | float:
    def bound(key: str) -> float | None:
        value = schema.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    low, high = bound("minimum"), bound("maximum")
    xlow, xhigh = bound("exclusiveMinimum"), bound("exclusiveMaximum")
    step = bound("multipleOf")
    unit = step or 1.0
    nudge = unit if integer or step else 0.5
    start = 0.0
    if low is not None:
        start = low
    elif xlow is not None:
        start = xlow + nudge
    elif high is not None and high < 0:
        start = high
    elif xhigh is not None and xhigh <= 0:
        start = xhigh - nudge
    if step:
        start = math.ceil(start / step) * step
    if integer:
        start = math.ceil(start)
    value = start + index * unit
    # An upper bound wins over variety: repeated items beat an invalid one.
    if (high is not None and value > high) or (xhigh is not None and value >= xhigh):
        value = start
    return int(value) if integer or value.is_integer() else value


def _integer(schema: Mapping[str, Any], index: int) -> int | float:
    return _number(schema, index, integer=True)


def _float(schema: Mapping[str, Any], index: int) -> int | float:
    return _number(schema, index, integer=False)


_SCALARS: dict[str, Callable[[Mapping[str, Any], int], Any]] = {
    "string": _string,
    "integer": _integer,
    "number": _float,
    "boolean": _boolean,
    "null": _null,
}
