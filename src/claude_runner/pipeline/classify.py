"""A CLI run's failure kind, from what the CLI reported (see docs/cli-behaviour.md)."""

from __future__ import annotations

from claude_runner.pipeline.result import TaskResult
from claude_runner.pipeline.state import FailureKind

_SUBTYPE_KINDS = {
    "error_max_turns": FailureKind.MAX_TURNS,
    "error_max_budget_usd": FailureKind.BUDGET,
    "error_max_structured_output_retries": FailureKind.OUTPUT_INVALID,
}


def classify(res: TaskResult) -> FailureKind:
    """The failure kind of a finished CLI that did not succeed, from what it reported
    (see docs/cli-behaviour.md for what the pinned CLI prints in each case)."""
    if res.is_error is None and res.num_turns is None:
        return FailureKind.CRASH  # no result message
    by_subtype = _SUBTYPE_KINDS.get(res.result_subtype or "")
    if by_subtype is not None:
        return by_subtype
    status = res.api_error_status
    if status is not None:
        if status == 429:
            return FailureKind.RATE_LIMITED
        return FailureKind.AUTH if status in (401, 403) else FailureKind.API_ERROR
    # A result with is_error and no API status is the agent's own error; a clean result
    # with a non-zero exit is a crash.
    return FailureKind.AGENT_ERROR if res.is_error else FailureKind.CRASH
