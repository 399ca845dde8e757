"""Per-task outcomes and the aggregated ``pipeline_result``.

Task status is one of ``succeeded`` (exit 0 and a ``result`` message with
``is_error: false``), ``failed``, ``cancelled`` (stopped by fail_fast or a signal while
running) and ``skipped`` (never started); ``failure_kind`` says why one did not succeed.
The overall status is ``succeeded`` when every task succeeded, ``cancelled`` when the run
was cancelled by a signal, else ``failed``. The result text is cut at
``RESULT_TEXT_LIMIT`` characters (``result_truncated`` says so).

A ``TaskResult`` is written by its task's ``TaskRun`` alone (``task.py``): the one owner of
a task's state; everybody else reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from claude_runner.pipeline.events import SCHEMA_VERSION, utc_now
from claude_runner.pipeline.state import STATUSES, FailureKind, TaskStatus

RESULT_TEXT_LIMIT = 16 * 1024
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


@dataclass
class AttemptRecord:
    """One attempt of a task (the first, or a retry)."""

    attempt: int
    status: TaskStatus
    failure_kind: FailureKind | None
    reason: str | None
    exit_code: int | None
    duration_s: float
    cost_usd: float
    cost_estimated: bool
    session_id: str | None
    log: str


@dataclass
class TaskResult:
    """What one task did; filled in as it runs, frozen into the result at the end."""

    stage_id: str
    task_id: str
    model: str | None
    workspace_mode: str
    status: TaskStatus = TaskStatus.SKIPPED
    failure_kind: FailureKind | None = None
    exit_code: int | None = None
    signal: str | None = None
    is_error: bool | None = None
    reason: str | None = None
    duration_s: float = 0.0
    session_id: str | None = None
    result: str | None = None
    result_truncated: bool = False
    result_subtype: str | None = None  # the CLI's result subtype (error_max_turns, ...)
    api_error_status: int | None = None  # the HTTP status of an API error the CLI reported
    num_turns: int | None = None
    total_cost_usd: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    workspace: str | None = None
    log: str | None = None
    stderr_log: str | None = None
    config_dir: str | None = None
    branch: str | None = None
    patch: str | None = None
    changed_files: int | None = None
    secrets_in_changes: list[str] = field(default_factory=list)
    workspace_method: str | None = None  # shared, copy (reflink, overlay: see taskspace)
    read_only: str | None = None  # snapshot_ro: how read-only was guaranteed
    attempts: list[AttemptRecord] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    output: Any = None  # the structured output (output_schema)
    cost_estimated: bool = False  # part of total_cost_usd was estimated from token usage
    instance_of: str | None = None  # a for_each instance: the task it was made from
    item: Any = None  # a for_each instance: its item
    needs: list[str] = field(default_factory=list)  # "stage/task" refs it waited for
    notes: list[str] = field(default_factory=list)

    def take_result_message(self, message: dict[str, Any]) -> None:
        """Copy what the CLI's final ``result`` message reports."""
        is_error = message.get("is_error")
        self.is_error = is_error if isinstance(is_error, bool) else None
        subtype = message.get("subtype")
        self.result_subtype = subtype if isinstance(subtype, str) else None
        status = message.get("api_error_status")
        self.api_error_status = status if isinstance(status, int) else None
        text = message.get("result")
        if isinstance(text, str):
            self.result_truncated = len(text) > RESULT_TEXT_LIMIT
            self.result = text[:RESULT_TEXT_LIMIT]
        elif isinstance(message.get("errors"), list):
            self.result = "; ".join(str(e) for e in message["errors"])[:RESULT_TEXT_LIMIT]
        turns = message.get("num_turns")
        self.num_turns = turns if isinstance(turns, int) else None
        sid = message.get("session_id")
        if isinstance(sid, str) and sid and self.session_id is None:
            self.session_id = sid


def cost_of(message: dict[str, Any]) -> float | None:
    """The cost a result message reports."""
    cost = message.get("total_cost_usd")
    return float(cost) if isinstance(cost, int | float) else None


def usage_of(message: dict[str, Any]) -> dict[str, int]:
    """The token usage a message reports (a result's, or an assistant message's)."""
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return {}
    return {k: int(usage[k]) for k in USAGE_KEYS if isinstance(usage.get(k), int)}


def counts(results: list[TaskResult]) -> dict[str, int]:
    return {s: sum(1 for r in results if r.status == s) for s in STATUSES}


def overall_status(results: list[TaskResult], *, cancelled: bool) -> str:
    """``succeeded`` when every task succeeded or was skipped for no failure (a v2
    condition that said no, an empty fan-out); else ``cancelled`` after a signal, or
    ``failed``."""
    if all(
        r.status == TaskStatus.SUCCEEDED
        or (r.status == TaskStatus.SKIPPED and r.failure_kind is None)
        for r in results
    ):
        return "succeeded"
    return "cancelled" if cancelled else "failed"


def pipeline_result(
    *,
    plan_run_id: str,
    run_dir: str,
    results: list[TaskResult],
    duration_s: float,
    cancelled: bool,
    notes: list[str],
) -> dict[str, Any]:
    """The final ``pipeline_result`` object (also written to ``result.json``)."""
    status = overall_status(results, cancelled=cancelled)
    tokens = {k: sum(r.usage.get(k, 0) for r in results) for k in USAGE_KEYS}
    return {
        "type": "pipeline_result",
        "ts": utc_now(),
        "schema_version": SCHEMA_VERSION,
        "plan_run_id": plan_run_id,
        "status": status,
        "exit_code": 0 if status == "succeeded" else 1,
        "run_dir": run_dir,
        "counts": counts(results),
        "totals": {
            "total_cost_usd": round(sum(r.total_cost_usd or 0.0 for r in results), 6),
            "usage": tokens,
            "num_turns": sum(r.num_turns or 0 for r in results),
            "duration_s": round(duration_s, 3),
            "task_duration_s": round(sum(r.duration_s for r in results), 3),
        },
        # vars() + copies of the two containers: asdict() deep-copies every value.
        "tasks": [task_entry(r) for r in results],
        "notes": list(notes),
    }


def task_entry(r: TaskResult) -> dict[str, Any]:
    """A task's part of the result: every field (vars() and copies of the containers:
    asdict() deep-copies every value)."""
    return {
        **vars(r),
        "usage": dict(r.usage),
        "notes": list(r.notes),
        "secrets_in_changes": list(r.secrets_in_changes),
        "attempts": [vars(a) for a in r.attempts],
        "checks": list(r.checks),
        "needs": list(r.needs),
    }
