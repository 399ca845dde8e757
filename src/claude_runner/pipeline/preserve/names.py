"""Branch names for every id the plan loader accepts.

Ids match ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`` and fan-out instances add ``[<n>]``, so
an id may hold what a ref component may not (``git check-ref-format``): ``..``, a
trailing ``.``, a ``.lock`` suffix, ``[``. Each component is encoded: those characters
become ``%XX`` (``a..b`` -> ``a%2E%2Eb``, ``x.`` -> ``x%2E``, ``a.lock`` -> ``a%2Elock``,
``port[3]`` -> ``port%5B3%5D``), as does ``%`` itself and any byte outside printable
ASCII; every other character stays as it is. ``decode_component`` undoes the encoding
exactly, so two different ids never share a branch, and an ordinary id (``build``,
``v1.2``) reads as itself.
"""

from __future__ import annotations

import re

# Dots that would break a component: in a run of dots, last, leading, or before "lock"
# at the end (git refuses "*.lock" case-sensitively; encoding any case costs nothing).
_DOTS = re.compile(rb"^\.|\.(?=\.)|(?<=\.)\.|\.$|\.(?=lock$)", re.IGNORECASE)
# Printable ASCII that a ref component may hold ("@" only matters before "{": escaped
# anyway, with "{" and "}", to keep the rule simple).
_KEEP = frozenset(b for b in range(0x21, 0x7F) if chr(b) not in " ~^:?*[]\\@{}%/")
_ESCAPE = re.compile(rb"%([0-9A-F]{2})")


def encode_component(name: str) -> str:
    """``name`` as a valid ref component (injective over all non-empty strings)."""
    if not name:
        raise ValueError("an empty name has no ref component")
    raw = name.encode("utf-8", "surrogateescape")
    dots = {m.start() for m in _DOTS.finditer(raw)}
    return "".join(
        chr(b) if b in _KEEP and i not in dots else f"%{b:02X}" for i, b in enumerate(raw)
    )


def decode_component(component: str) -> str:
    """The name ``encode_component`` made ``component`` from."""
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), component.encode("ascii"))
    return raw.decode("utf-8", "surrogateescape")


def branch_name(plan_run_id: str, stage_id: str, task_id: str) -> str:
    """``pipeline/<planRunId>/<stageId>/<taskId>``, each component encoded."""
    parts = (plan_run_id, stage_id, task_id)
    return "/".join(["pipeline", *(encode_component(part) for part in parts)])
