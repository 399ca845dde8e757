"""Synthetic run directories, written as the v2 run contract describes them (the run
directory's layout, the events and the result, with the v2 additions: attempts, retries,
checks, failure kinds, budget), for the report and progress tests and ``bench/report.py``.

``RunBuilder`` writes ``run.json``, ``plan.json``, ``events.jsonl`` (event envelope:
``type``, ``ts``, ``schema_version``, ``plan_run_id``), ``tasks/<stage>/<task>/`` with
``agent.log`` (stream-json lines shaped like the real CLI's), ``stderr.log``,
``result.json``, and ``attempt-<n>/`` for earlier attempts, and at the end
``result.json``. Times are synthetic (a parallel stage's tasks start together, a
sequential stage's one after the other) and events are written in time order, so the
output is deterministic. ``crash()`` leaves a run as a killed runner would: no plan_finish, no
result, a task started and not finished, and half a line at the end of events.jsonl.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def ts(seconds: float) -> str:
    return (
        (START + timedelta(seconds=seconds))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


# --- stream-json lines shaped like the pinned CLI's -------------------------------------


def init_line(session: str, model: str = "claude-sonnet-4-5", cwd: str = "/workspace") -> str:
    return _line(
        {
            "type": "system",
            "subtype": "init",
            "cwd": cwd,
            "session_id": session,
            "tools": ["Task", "Bash", "Edit", "Read", "Write"],
            "mcp_servers": [],
            "model": model,
            "permissionMode": "bypassPermissions",
            "apiKeySource": "ANTHROPIC_API_KEY",
            "claude_code_version": "2.1.332",
        }
    )


def assistant_text(session: str, text: str, model: str = "claude-sonnet-4-5", n: int = 0) -> str:
    return _line(
        {
            "type": "assistant",
            "message": {
                "id": f"msg_{n}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "usage": {"input_tokens": 100, "output_tokens": 20},
            },
            "parent_tool_use_id": None,
            "session_id": session,
        }
    )


def tool_use(session: str, tool_id: str, name: str, tool_input: dict[str, Any]) -> str:
    return _line(
        {
            "type": "assistant",
            "message": {
                "id": f"msg_{tool_id}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [{"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}],
                "usage": {"input_tokens": 100, "output_tokens": 20},
            },
            "parent_tool_use_id": None,
            "session_id": session,
        }
    )


def tool_result(session: str, tool_id: str, output: str, *, is_error: bool = False) -> str:
    return _line(
        {
            "type": "user",
            "message": {
                "role": "user",
                "content": [
                    {
                        "tool_use_id": tool_id,
                        "type": "tool_result",
                        "content": output,
                        "is_error": is_error,
                    }
                ],
            },
            "parent_tool_use_id": None,
            "session_id": session,
        }
    )


def result_line(
    session: str,
    text: str,
    *,
    cost: float,
    turns: int,
    is_error: bool = False,
    subtype: str = "success",
    models: dict[str, float] | None = None,
) -> str:
    models = models or {"claude-sonnet-4-5": cost}
    return _line(
        {
            "type": "result",
            "subtype": subtype,
            "is_error": is_error,
            "result": text,
            "session_id": session,
            "num_turns": turns,
            "duration_ms": 1000,
            "total_cost_usd": cost,
            "usage": {"input_tokens": 1000 * turns, "output_tokens": 200 * turns},
            "modelUsage": {
                name: {
                    "inputTokens": 1000 * turns,
                    "outputTokens": 200 * turns,
                    "cacheReadInputTokens": 0,
                    "cacheCreationInputTokens": 0,
                    "costUSD": c,
                }
                for name, c in models.items()
            },
        }
    )


def transcript(
    session: str,
    *,
    result: str = "done",
    cost: float = 0.01,
    tools: int = 2,
    pad: int = 0,
    is_error: bool = False,
    models: dict[str, float] | None = None,
) -> str:
    """A whole agent.log: init, ``tools`` tool calls with results (each result padded to
    ``pad`` characters), a closing text and the result."""
    out = [init_line(session)]
    for n in range(tools):
        tid = f"toolu_{session}_{n}"
        out.append(tool_use(session, tid, "Bash", {"command": f"pytest -q tests/test_{n}.py"}))
        body = f"{n} passed in 0.1s\n" + ("." * max(0, pad - 20))
        out.append(tool_result(session, tid, body))
    out.append(assistant_text(session, f"All checks pass. {result}", n=tools))
    out.append(
        result_line(session, result, cost=cost, turns=tools + 1, is_error=is_error, models=models)
    )
    return "".join(out)


# --- the run directory ----------------------------------------------------------------


@dataclass
class Attempt:
    """One attempt: its outcome and its log (``None``: no log written)."""

    status: str = "succeeded"
    failure_kind: str | None = None
    reason: str | None = None
    duration: float = 2.0
    cost: float = 0.01
    log: str | None = None
    exit_code: int | None = 0


@dataclass
class Check:
    exit_code: int
    duration: float = 0.5
    output: str = ""


@dataclass
class TaskSpec:
    stage: str
    id: str
    attempts: list[Attempt] = field(default_factory=lambda: [Attempt()])
    checks: list[Check] = field(default_factory=list)
    result: str | None = "done"
    model: str | None = "sonnet"
    needs: list[str] | None = None
    branch: str | None = None
    changed_files: int | None = None
    skipped_reason: str | None = None  # a task that never started

    @property
    def status(self) -> str:
        return "skipped" if self.skipped_reason is not None else self.attempts[-1].status

    @property
    def failure_kind(self) -> str | None:
        if self.skipped_reason is not None:
            return "upstream_failed"
        return self.attempts[-1].failure_kind


class RunBuilder:
    """Writes one run directory under ``root``; call ``start``, ``run_task``..., then
    ``finish`` or ``crash``."""

    def __init__(self, root: Path, plan_run_id: str = "20261130T120000.000Z-abc123") -> None:
        self.plan_run_id = plan_run_id
        self.dir = root / plan_run_id
        self.dir.mkdir(parents=True)
        self.events = (self.dir / "events.jsonl").open("w", encoding="utf-8")
        self.now = 0.0
        self.results: list[dict[str, Any]] = []
        self.stages: list[tuple[str, str, list[TaskSpec]]] = []
        self.queue: list[tuple[float, int, dict[str, Any]]] | None = None

    def emit(self, event: str, /, **fields: Any) -> dict[str, Any]:
        body = {
            "type": f"pipeline_event.{event}" if event != "pipeline_result" else event,
            "ts": ts(self.now),
            "schema_version": 1,
            "plan_run_id": self.plan_run_id,
            **fields,
        }
        if self.queue is not None:
            self.queue.append((self.now, len(self.queue), body))
        else:
            self.events.write(_line(body))
        return body

    def flush(self) -> None:
        """Write the queued events of a parallel stage in time order."""
        queued, self.queue = self.queue or [], None
        for _, _, body in sorted(queued, key=lambda q: (q[0], q[1])):
            self.events.write(_line(body))

    def start(
        self, stages: list[tuple[str, str, list[TaskSpec]]], *, budget_usd: float | None = None
    ) -> None:
        """plan.json, run.json and plan_start for ``stages`` [(id, mode, tasks)]."""
        self.stages = stages
        self.budget_usd = budget_usd
        plan = {
            "format": "claude-runner/plan",
            "plan": "plan.yml",
            "version": "v2",
            "stages": [
                {
                    "id": sid,
                    "mode": mode,
                    "tasks": [
                        {"id": t.id, "model": t.model, "needs": t.needs or []} for t in tasks
                    ],
                }
                for sid, mode, tasks in stages
            ],
        }
        (self.dir / "plan.json").write_text(json.dumps(plan))
        meta = {
            "version": "v2",
            "plan_path": "plan.yml",
            "workspace": "/workspace",
            "runner_version": "0.1.0",
            "started": ts(0),
            "rehearsal": False,
        }
        (self.dir / "run.json").write_text(json.dumps(meta))
        self.emit(
            "plan_start",
            plan_path="plan.yml",
            workspace="/workspace",
            run_dir=f"/runs/{self.plan_run_id}",  # where it ran: paths are rebased
            stage_count=len(stages),
            task_count=sum(len(t) for _, _, t in stages),
            version="v2",
            rehearsal=False,
            max_concurrency=None,
            budget_usd=budget_usd,
            workspace_methods=None,
        )

    def task_dir(self, t: TaskSpec) -> Path:
        path = self.dir / "tasks" / t.stage / t.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def origin(self, path: Path) -> str:
        """``path`` as the runner that wrote the events saw it."""
        return f"/runs/{self.plan_run_id}/{path.relative_to(self.dir)}"

    def run_task(self, t: TaskSpec, *, finish: bool = True) -> None:
        """Events and files of one task, attempts back to back from ``self.now``."""
        if t.skipped_reason is not None:
            self.emit_finish(t, duration=0.0, attempts=[])
            return
        folder = self.task_dir(t)
        records: list[dict[str, Any]] = []
        begin = self.now
        for n, a in enumerate(t.attempts, 1):
            log = folder / "agent.log"
            self.emit(
                "task_start",
                stage_id=t.stage,
                task_id=t.id,
                model=t.model,
                workspace_mode="worktree",
                workspace=f"/runs/{self.plan_run_id}/tasks/{t.stage}/{t.id}/workspace",
                log=self.origin(log),
                attempt=n,
                instance_of=None,
                workspace_method="copy",
                read_only=None,
            )
            session = f"sess-{t.stage}-{t.id}-{n}"
            log.write_text(a.log if a.log is not None else "", encoding="utf-8")
            (folder / "stderr.log").write_text("")
            self.emit("task_session_bind", stage_id=t.stage, task_id=t.id, session_id=session)
            self.now += a.duration
            last = n == len(t.attempts)
            record = {
                "attempt": n,
                "status": a.status,
                "failure_kind": a.failure_kind,
                "reason": a.reason,
                "exit_code": a.exit_code,
                "duration_s": a.duration,
                "cost_usd": a.cost,
                "cost_estimated": False,
                "session_id": session,
                "log": self.origin(log),
            }
            if not last:
                moved = folder / f"attempt-{n}"
                moved.mkdir()
                log.rename(moved / "agent.log")
                record["log"] = self.origin(moved / "agent.log")
                self.emit(
                    "task_retry",
                    stage_id=t.stage,
                    task_id=t.id,
                    attempt=n + 1,
                    kind=a.failure_kind,
                    delay_s=1.0,
                    reason=a.reason,
                )
                self.now += 1.0
            elif not finish:
                return
            records.append(record)
        for n, c in enumerate(t.checks, 1):
            check_log = folder / f"check-{n}.log"
            check_log.write_text(c.output)
            self.now += c.duration
            self.emit(
                "task_check",
                stage_id=t.stage,
                task_id=t.id,
                attempt=n,
                exit_code=c.exit_code,
                duration_s=c.duration,
                passed=c.exit_code == 0,
                log=self.origin(check_log),
            )
        self.emit_finish(t, duration=self.now - begin, attempts=records)

    def emit_finish(self, t: TaskSpec, *, duration: float, attempts: list[dict[str, Any]]) -> None:
        final = t.attempts[-1]
        cost = round(sum(a["cost_usd"] for a in attempts), 6) if attempts else None
        reason = t.skipped_reason if t.skipped_reason is not None else final.reason
        session = attempts[-1]["session_id"] if attempts else None
        self.emit(
            "task_finish",
            stage_id=t.stage,
            task_id=t.id,
            status=t.status,
            exit_code=None if not attempts else final.exit_code,
            signal=None,
            is_error=None if not attempts else t.status != "succeeded",
            reason=reason,
            duration_s=round(duration, 3),
            session_id=session,
            branch=t.branch,
            patch=None,
            changed_files=t.changed_files,
            failure_kind=t.failure_kind,
            attempts=len(attempts),
            cost_usd=cost,
            secrets_in_changes=[],
        )
        folder = self.dir / "tasks" / t.stage / t.id
        entry = {
            "stage_id": t.stage,
            "task_id": t.id,
            "model": t.model,
            "workspace_mode": "worktree",
            "status": t.status,
            "failure_kind": t.failure_kind,
            "exit_code": None if not attempts else final.exit_code,
            "signal": None,
            "is_error": None if not attempts else t.status != "succeeded",
            "reason": reason,
            "duration_s": round(duration, 3),
            "session_id": session,
            "result": t.result if attempts else None,
            "result_truncated": False,
            "num_turns": 3 if attempts else None,
            "total_cost_usd": cost,
            "usage": {k: (1000 if k == "input_tokens" else 0) for k in USAGE_KEYS}
            if attempts
            else {},
            "workspace": self.origin(folder / "workspace"),
            "log": self.origin(folder / "agent.log") if attempts else None,
            "stderr_log": self.origin(folder / "stderr.log") if attempts else None,
            "config_dir": f"/runs/{self.plan_run_id}/config/slot-0",
            "branch": t.branch,
            "patch": None,
            "changed_files": t.changed_files,
            "notes": [],
            "attempts": attempts,
            "output": None,
            "checks": [
                {"attempt": n, "exit_code": c.exit_code, "passed": c.exit_code == 0}
                for n, c in enumerate(t.checks, 1)
            ],
            "instance_of": None,
            "item": None,
            "needs": t.needs or [],
            "secrets_in_changes": [],
            "workspace_method": "copy" if attempts else None,
        }
        if attempts:
            (folder / "result.json").write_text(_line(entry))
        self.results.append(entry)

    def stage(self, sid: str, mode: str, tasks: list[TaskSpec]) -> None:
        self.emit("stage_start", stage_id=sid, mode=mode, max_parallel=None, task_count=len(tasks))
        if mode == "parallel":
            begin, end = self.now, self.now
            self.queue = []
            for t in tasks:
                self.now = begin
                self.run_task(t)
                end = max(end, self.now)
            self.now = end
            self.flush()
        else:
            for t in tasks:
                self.run_task(t)
        status = "succeeded" if all(t.status == "succeeded" for t in tasks) else "failed"
        self.emit(
            "stage_finish",
            stage_id=sid,
            status=status,
            duration_s=1.0,
            counts=_counts([t.status for t in tasks]),
        )

    def finish(self) -> Path:
        statuses = [r["status"] for r in self.results]
        status = "succeeded" if all(s == "succeeded" for s in statuses) else "failed"
        self.emit("plan_finish", status=status, duration_s=self.now, counts=_counts(statuses))
        spent = round(sum(r["total_cost_usd"] or 0 for r in self.results), 6)
        result = self.emit(
            "pipeline_result",
            status=status,
            exit_code=0 if status == "succeeded" else 1,
            run_dir=f"/runs/{self.plan_run_id}",
            counts=_counts(statuses),
            totals={
                "total_cost_usd": spent,
                "usage": {k: sum(r["usage"].get(k, 0) for r in self.results) for k in USAGE_KEYS},
                "num_turns": sum(r["num_turns"] or 0 for r in self.results),
                "duration_s": self.now,
                "task_duration_s": sum(r["duration_s"] for r in self.results),
            },
            tasks=self.results,
            version="v2",
            rehearsal=False,
            budget=None
            if self.budget_usd is None
            else {
                "limit_usd": self.budget_usd,
                "spent_usd": spent,
                "estimated_usd": 0.0,
                "reserved_usd": 0.0,
            },
        )
        self.events.close()
        (self.dir / "result.json").write_text(_line(result))
        return self.dir

    def crash(self, unfinished: TaskSpec | None = None) -> Path:
        """Stop as a killed runner would: ``unfinished`` started and never finished, the
        last event line cut in half, no plan_finish, no result."""
        if unfinished is not None:
            self.run_task(unfinished, finish=False)
        cut = _line({"type": "pipeline_event.stage_start", "ts": ts(self.now), "stage_id": "x"})
        self.events.write(cut[: len(cut) // 2])
        self.events.close()
        return self.dir


def _counts(statuses: list[str]) -> dict[str, int]:
    return {s: statuses.count(s) for s in ("succeeded", "failed", "cancelled", "skipped")}


def sample_run(root: Path, *, secret: str = "") -> Path:
    """A small finished v2 run that shows every feature: a retry that then succeeded, a
    failure with a reason, a check that failed once, a skipped task, two models."""
    s1 = "sess-analyze-inspect-1"
    inspect = TaskSpec(
        "analyze",
        "inspect",
        attempts=[Attempt(cost=0.02, log=transcript(s1, result="3 risks found", cost=0.02))],
        result="3 risks found",
    )
    flaky = TaskSpec(
        "build",
        "code",
        attempts=[
            Attempt(
                status="failed",
                failure_kind="rate_limited",
                reason="API Error: 429 rate limited",
                duration=1.0,
                cost=0.001,
                exit_code=1,
                log=init_line("sess-build-code-1")
                + result_line(
                    "sess-build-code-1", "API Error: 429", cost=0.001, turns=1, is_error=True
                ),
            ),
            Attempt(
                duration=3.0,
                cost=0.05,
                log=transcript(
                    "sess-build-code-2",
                    result="implemented",
                    cost=0.05,
                    models={"claude-sonnet-4-5": 0.04, "claude-haiku-4-5": 0.01},
                ),
            ),
        ],
        checks=[Check(exit_code=1, output="1 failed"), Check(exit_code=0, output="ok")],
        needs=["analyze/inspect"],
        branch="pipeline/20261130T120000.000Z-abc123/build/code",
        changed_files=3,
        result="implemented",
    )
    leak = f" token {secret}" if secret else ""
    broken = TaskSpec(
        "build",
        "docs",
        attempts=[
            Attempt(
                status="failed",
                failure_kind="agent_error",
                reason=f"the CLI reported an error: <b>bad</b> | pipe{leak}",
                exit_code=1,
                cost=0.003,
                duration=4.0,
                log=init_line("sess-build-docs-1")
                + assistant_text("sess-build-docs-1", f"I will print the key{leak}")
                + "not json at all\n"
                + result_line(
                    "sess-build-docs-1", f"failed{leak}", cost=0.003, turns=1, is_error=True
                ),
            )
        ],
        needs=["analyze/inspect"],
        result=f"failed{leak}",
    )
    skipped = TaskSpec(
        "ship", "release", needs=["build/code", "build/docs"], skipped_reason="upstream failed"
    )
    b = RunBuilder(root)
    stages = [
        ("analyze", "sequential", [inspect]),
        ("build", "parallel", [flaky, broken]),
        ("ship", "sequential", [skipped]),
    ]
    b.start(stages, budget_usd=5.0)
    for sid, mode, tasks in stages:
        b.stage(sid, mode, tasks)
    return b.finish()
