"""The limits that keep every expression cheap, and the step budget that enforces them.

An expression has no loops and no recursion, so its cost is bounded by its size times
the size of the values it touches; the limits below bound both. Every limit raises an
``ExpressionError`` with a message that names it: never a hang, ``RecursionError`` or
``MemoryError``.
"""

from __future__ import annotations

MAX_EXPRESSION_CHARS = 4096
"""Source text of one expression (the part between ``${{`` and ``}}``), in characters."""
MAX_DEPTH = 32
"""Nesting of parentheses, ``!``, calls, indexes and operators in one expression."""
MAX_STEPS = 1_000_000
"""Work units of one evaluation (one expression, or one whole template rendering): one
per syntax node evaluated, per list item or mapping entry compared, scanned, joined or
measured, and per 1,024 characters of string compared, searched or parsed."""
MAX_VALUE_CHARS = 1 << 20
"""A result (or a value rendered into text) as compact JSON, in characters: 1 MiB."""
MAX_LIST_ITEMS = 10_000
"""Items of one list in a result."""
MAX_VALUE_DEPTH = 100
"""Nesting of lists and mappings in a value that is measured, compared or serialised."""

CHARS_PER_STEP = 1024


class Failure(Exception):
    """An evaluation problem raised below the evaluator, which adds the position.

    ``offset`` is filled in by the innermost syntax node that sees the failure.
    """

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint
        self.offset: int | None = None


class Budget:
    """The steps one evaluation may still take (see ``MAX_STEPS``)."""

    __slots__ = ("left",)

    def __init__(self, steps: int = MAX_STEPS) -> None:
        self.left = steps

    def charge(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise Failure(
                f"evaluation took more than {MAX_STEPS:,} steps",
                "the expression does too much work on too large values",
            )

    def charge_chars(self, chars: int) -> None:
        self.charge(chars // CHARS_PER_STEP + 1)
