"""When a failed attempt is tried again, and how long after.

Exponential backoff with full jitter (a uniform draw between 0 and
``min(backoff_max, backoff_base * 2**(attempt-1))``): parallel tasks that failed together
(a wave of 429s) do not come back together. A ``Retry-After`` the API sent, when the CLI
lets it be seen, is a floor on the delay.
"""

from __future__ import annotations

import random

from claude_runner.pipeline.state import FailureKind
from claude_runner.plan.resolved import Retries

# Kinds a plan may retry (docs: README, `retries.on`); the rest never are.
RETRYABLE = frozenset(
    {
        FailureKind.TIMEOUT,
        FailureKind.IDLE_TIMEOUT,
        FailureKind.RATE_LIMITED,
        FailureKind.API_ERROR,
        FailureKind.AUTH,
        FailureKind.MAX_TURNS,
        FailureKind.CRASH,
        FailureKind.AGENT_ERROR,
        FailureKind.OUTPUT_INVALID,
        FailureKind.CHECK_FAILED,
    }
)


def retry_delay(
    policy: Retries,
    *,
    attempt: int,
    kind: FailureKind | None,
    retry_after: float | None,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when there is none."""
    if kind is None or kind not in RETRYABLE or kind.value not in policy.on:
        return None
    # ``attempt`` counts the attempts that count (the run's own 429s may not): never
    # more than ``max`` retries of those, and none at all with ``max: 0``.
    if policy.max < 1 or attempt > policy.max:
        return None
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (max(attempt, 1) - 1))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return round(delay, 3)
