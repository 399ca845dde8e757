"""What the progress views show, kept up to date from events and agent activity.

``RunState.event`` takes every event body (in order) and ``RunState.activity`` the
agent's current tool, turns and cost; both only update a few fields (no I/O, no
formatting), because the runner calls them for every line. Times come from the events'
``ts`` (so a replay of a recorded run shows the recorded times) and, for what is still
running, from the clock passed to the views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_PREFIX = "pipeline_event."


def _epoch(ts: object) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class TaskState:
    stage_id: str
    task_id: str
    status: str = "pending"  # pending, running, retrying, checking, or a final status
    attempt: int = 0
    started: float | None = None  # first attempt's start
    ended: float | None = None
    turns: int | None = None
    cost_usd: float | None = None
    tool: str | None = None
    failure_kind: str | None = None
    note: str = ""  # the last retry/check, shortly

    @property
    def key(self) -> str:
        return f"{self.stage_id}/{self.task_id}"

    @property
    def active(self) -> bool:
        return self.status in ("running", "retrying", "checking")


@dataclass
class StageState:
    id: str
    mode: str = ""
    task_count: int = 0
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    tasks: dict[str, TaskState] = field(default_factory=dict)


@dataclass
class RunState:
    plan_run_id: str = ""
    started: float | None = None
    ended: float | None = None
    status: str = "running"
    task_count: int = 0
    budget_usd: float | None = None
    stages: dict[str, StageState] = field(default_factory=dict)
    revision: int = 0  # bumped on every change the views show

    def stage(self, stage_id: str) -> StageState:
        found = self.stages.get(stage_id)
        if found is None:
            found = self.stages[stage_id] = StageState(id=stage_id)
        return found

    def task(self, stage_id: str, task_id: str) -> TaskState:
        stage = self.stage(stage_id)
        found = stage.tasks.get(task_id)
        if found is None:
            found = stage.tasks[task_id] = TaskState(stage_id=stage_id, task_id=task_id)
        return found

    def tasks(self) -> list[TaskState]:
        return [t for s in self.stages.values() for t in s.tasks.values()]

    def spent(self) -> float:
        return sum(t.cost_usd or 0.0 for t in self.tasks())

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for t in self.tasks():
            found[t.status] = found.get(t.status, 0) + 1
        return found

    # -- updates ------------------------------------------------------------------------

    def event(self, body: dict[str, Any]) -> str | None:
        """Take one event; its short type (``task_start`` ...) when it changed the state."""
        kind = body.get("type")
        if not isinstance(kind, str) or not kind.startswith(_PREFIX):
            return None
        name = kind[len(_PREFIX) :]
        if name == "task_output":  # the agent's stream again: nothing to show
            return None
        handler = getattr(self, "_on_" + name, None)
        if handler is None:
            return None
        handler(body, _epoch(body.get("ts")))
        self.revision += 1
        return name

    def _on_plan_start(self, e: dict[str, Any], ts: float | None) -> None:
        self.plan_run_id = str(e.get("plan_run_id", ""))
        self.started = ts
        self.task_count = int(e.get("task_count") or 0)
        self.budget_usd = _num(e.get("budget_usd"))

    def _on_stage_start(self, e: dict[str, Any], ts: float | None) -> None:
        stage = self.stage(str(e.get("stage_id")))
        stage.mode = str(e.get("mode") or "")
        stage.task_count = int(e.get("task_count") or 0)
        stage.status = "running"
        stage.started = ts

    def _on_stage_finish(self, e: dict[str, Any], ts: float | None) -> None:
        stage = self.stage(str(e.get("stage_id")))
        stage.status = str(e.get("status") or "")
        stage.ended = ts

    def _on_task_start(self, e: dict[str, Any], ts: float | None) -> None:
        t = self.task(str(e.get("stage_id")), str(e.get("task_id")))
        attempt = e.get("attempt")
        t.attempt = attempt if isinstance(attempt, int) else t.attempt + 1
        t.status = "running"
        t.tool = None
        if t.started is None:
            t.started = ts

    def _on_task_retry(self, e: dict[str, Any], ts: float | None) -> None:
        t = self.task(str(e.get("stage_id")), str(e.get("task_id")))
        t.status = "retrying"
        t.tool = None
        delay = _num(e.get("delay_s"))
        wait = f" in {delay:.0f}s" if delay is not None else ""
        t.note = f"retry {e.get('attempt')}{wait}: {e.get('kind')}"

    def _on_task_check(self, e: dict[str, Any], ts: float | None) -> None:
        t = self.task(str(e.get("stage_id")), str(e.get("task_id")))
        verdict = "passed" if e.get("passed") is True else f"exit {e.get('exit_code')}"
        t.note = f"check {e.get('attempt')} {verdict}"
        t.tool = None

    def _on_task_finish(self, e: dict[str, Any], ts: float | None) -> None:
        t = self.task(str(e.get("stage_id")), str(e.get("task_id")))
        t.status = str(e.get("status") or "")
        t.failure_kind = e.get("failure_kind") if isinstance(e.get("failure_kind"), str) else None
        t.ended = ts
        t.tool = None
        cost = _num(e.get("cost_usd"))
        if cost is not None:
            t.cost_usd = cost

    def _on_plan_finish(self, e: dict[str, Any], ts: float | None) -> None:
        self.status = str(e.get("status") or "")
        self.ended = ts

    def activity(
        self,
        stage_id: str,
        task_id: str,
        tool: str | None,
        turns: int | None,
        cost_usd: float | None,
    ) -> None:
        t = self.task(stage_id, task_id)
        t.tool = tool
        if turns is not None:
            t.turns = turns
        if cost_usd is not None:
            t.cost_usd = cost_usd
        if t.status == "pending":
            t.status = "running"
        self.revision += 1
