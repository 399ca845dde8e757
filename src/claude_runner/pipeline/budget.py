"""The plan's ``budget_usd``: spend that fails closed across parallel tasks.

A task starts only with a reservation that fits in what is left (the limit minus what
finished attempts spent minus what running attempts reserved), and its CLI runs with
``--max-budget-usd`` set to that reservation: the CLI checks its cap between turns
(measured: one $8 turn under a $0.5 cap ends after that turn), so no task spends more
than its reservation plus one turn, and the plan's total cannot exceed the limit by more
than one turn per running task. A task with its own ``max_budget_usd`` reserves that (or
less, when less is left); one without reserves an even share of what is left among the
tasks that could start now: ``left / free slots``. When no reservation of at least
``MIN_RESERVATION`` fits and nothing runs that could give some back, the tasks that did
not start are ``skipped`` with ``failure_kind: budget``.

Spend is what each attempt's CLI reported (``total_cost_usd``); for an attempt that was
killed before its result, what its stream's token usage costs at the prices of
``pricing.py``, marked estimated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIN_RESERVATION = 0.01


@dataclass
class Budget:
    """The plan's ledger; all amounts in US dollars."""

    limit: float
    spent: float = 0.0
    estimated: float = 0.0  # the part of ``spent`` that was estimated from token usage
    reservations: dict[object, float] = field(default_factory=dict)

    @property
    def reserved(self) -> float:
        return sum(self.reservations.values())

    @property
    def left(self) -> float:
        return self.limit - self.spent - self.reserved

    def reserve(self, key: object, *, cap: float | None, free_slots: int) -> float | None:
        """Reserve for ``key``'s attempt: its own ``cap``, or a share of what is left
        among ``free_slots``; None when no reservation of at least ``MIN_RESERVATION``
        fits now."""
        left = self.left
        want = cap if cap is not None else left / max(1, free_slots)
        amount = min(want, left)
        if amount < MIN_RESERVATION:
            return None
        amount = round(amount, 6)
        self.reservations[key] = amount
        return amount

    def settle(self, key: object, *, cost: float, estimated: bool) -> None:
        """``key``'s attempt ended having spent ``cost``; its reservation is released."""
        self.reservations.pop(key, None)
        self.spent += cost
        if estimated:
            self.estimated += cost

    def summary(self) -> dict[str, float]:
        return {
            "limit_usd": self.limit,
            "spent_usd": round(self.spent, 6),
            "estimated_usd": round(self.estimated, 6),
            "reserved_usd": round(self.reserved, 6),
        }
