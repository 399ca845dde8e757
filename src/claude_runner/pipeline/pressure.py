"""How many CLIs may run at once while the API answers 429: additive increase, decrease to
what the API is seen to bear.

A fan-out of 16 agents against an account allowed 4 concurrent requests used to lose
the run: 12 tasks got 429 at once. Here every task that ends ``rate_limited`` lowers the
run's limit to the number of CLIs still running at that moment (those are the requests
the API is bearing), never below one; a decrease within an episode of 429s only ever
lowers it further, so a wave of 429s from 16 tasks converges on the number that got
through. Every ``limit`` successes since the last decrease raise it by one, back up to
the configured cap (TCP's additive increase: about one more per round of tasks), so a
limit that was only a transient dip is found again. Halving on every 429 (classic AIMD)
was the first sketch: it overshoots to 1 or 2 on a wave of 429s and then takes many
rounds to climb back, which with a bounded number of retries per task meant failures.

Pure logic: the scheduler reports starts, finishes and 429s and asks for the limit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pressure:
    """The run's concurrency limit under rate-limit pressure."""

    cap: int  # the configured limit (max_concurrency, or the number of tasks)
    limit: int = 0
    decreases: int = 0
    _successes: int = 0

    def __post_init__(self) -> None:
        self.cap = max(1, self.cap)
        self.limit = self.cap

    def rate_limited(self, *, still_running: int) -> None:
        """A task ended ``rate_limited`` while ``still_running`` others run."""
        lowered = max(1, min(self.limit, still_running))
        if lowered < self.limit:
            self.decreases += 1
        self.limit = lowered
        self._successes = 0

    def succeeded(self) -> None:
        """A task's attempt got through the API (any outcome but a 429)."""
        if self.limit >= self.cap:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
