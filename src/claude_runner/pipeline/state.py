"""The closed vocabularies of a task's outcome: its status and, when it did not succeed,
the kind of failure.

Both are ``StrEnum``s, so they serialise as the plain strings of the event contract
(``"succeeded"``, ``"rate_limited"``) and a typo in the code is a type error, not a new
status nobody handles.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """How a task ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped while running (fail_fast, a signal, a timeout)
    SKIPPED = "skipped"  # never started


class FailureKind(StrEnum):
    """Why a task did not succeed (``failure_kind`` in events and the result)."""

    TIMEOUT = "timeout"
    IDLE_TIMEOUT = "idle_timeout"
    RATE_LIMITED = "rate_limited"
    API_ERROR = "api_error"
    AUTH = "auth"
    BUDGET = "budget"
    MAX_TURNS = "max_turns"
    CRASH = "crash"  # no result message: killed, or exited without one
    AGENT_ERROR = "agent_error"  # a result with is_error
    OUTPUT_INVALID = "output_invalid"
    CHECK_FAILED = "check_failed"
    PRESERVE_FAILED = "preserve_failed"
    SNAPSHOT_MODIFIED = "snapshot_modified"  # a snapshot_ro workspace was written to
    SETUP_FAILED = "setup_failed"  # prompt file, workspace copy, template: never launched
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"


STATUSES: tuple[str, ...] = tuple(TaskStatus)
