"""Run a resolved plan: stages in order, tasks one by one or up to ``max_parallel`` at
once (one loop per stage drives them: ``loop.py``, ``task.py``), events on ``out``, the
result at the end.

Event order: ``plan_start``; per stage ``stage_start``, per task ``task_start``,
``task_session_bind``, ``task_output``*, ``task_finish``; ``stage_finish``;
``plan_finish``; then the ``pipeline_result`` line. Stages and tasks that never run still
get ``stage_start``/``stage_finish`` and a ``task_finish`` with status ``skipped`` (no
``task_start``), so a consumer sees every task finish exactly once.

Failure policy (the failing task's ``on_error``): ``fail_fast`` starts no new task,
cancels the stage's running tasks (status ``cancelled``) and skips the rest;
``continue`` runs everything. ``cancel`` (set by the signal handler) stops running tasks
the same way. Return 0 when every task succeeded, else 1 (the caller maps a signal to
128 + signum).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from claude_runner.config import Settings
from claude_runner.pipeline import configdir, orphans, preserve, taskspace
from claude_runner.pipeline.events import (
    EventWriter,
    PlanFinish,
    PlanStart,
    StageFinish,
    StageStart,
)
from claude_runner.pipeline.loop import run_stage
from claude_runner.pipeline.result import TaskResult, counts, overall_status, pipeline_result
from claude_runner.pipeline.task import TASK_MARKER, RunContext, TaskRun
from claude_runner.plan.models import ResolvedPlan, ResolvedStage
from claude_runner.redact import Redactor


class _Run:
    """The mutable state of one plan run, driven by ``run_pipeline``."""

    def __init__(self, ctx: RunContext, cancel: threading.Event) -> None:
        self.ctx = ctx
        self.cancel = cancel
        self.abort_reason: str | None = None
        self.results: list[TaskResult] = []

    def _abort(self) -> str | None:
        """Why no further task may start (a signal, a fail_fast failure), or None."""
        if self.cancel.is_set() and self.abort_reason is None:
            self.abort_reason = "cancelled by a signal to the runner"
        return self.abort_reason

    def _finished(self, run: TaskRun) -> None:
        res = run.result
        if (
            self.abort_reason is None
            and res.status == "failed"
            and run.task.on_error == "fail_fast"
        ):
            self.abort_reason = f"fail_fast: task {res.stage_id}/{res.task_id} failed"

    def stage(self, stage: ResolvedStage) -> None:
        ctx = self.ctx
        started = time.monotonic()
        ctx.writer.emit(
            StageStart(
                plan_run_id=ctx.plan_run_id,
                stage_id=stage.id,
                mode=stage.mode,
                max_parallel=stage.max_parallel,
                task_count=len(stage.tasks),
            )
        )
        runs = [TaskRun(t, ctx) for t in stage.tasks]
        self.results.extend(r.result for r in runs)
        limit = 1 if stage.mode == "sequential" else min(stage.max_parallel or len(runs), len(runs))
        (ctx.run_dir / stage.id).mkdir(exist_ok=True)  # the tasks' logs go there
        config_dirs = [taskspace.config_slot(ctx.run_dir, stage.id, n) for n in range(limit)]
        run_stage(runs, config_dirs=config_dirs, abort_reason=self._abort, finished=self._finished)
        orphans.kill_marked(TASK_MARKER, f"{ctx.plan_run_id}/{stage.id}/", prefix=True)
        for config_dir in config_dirs:
            configdir.scrub(config_dir, ctx.redactor)
        stage_results = [r.result for r in runs]
        ctx.writer.emit(
            StageFinish(
                plan_run_id=ctx.plan_run_id,
                stage_id=stage.id,
                status=overall_status(stage_results, cancelled=self.cancel.is_set()),
                duration_s=round(time.monotonic() - started, 3),
                counts=counts(stage_results),
            )
        )


def run_pipeline(
    plan: ResolvedPlan,
    *,
    workspace: Path,
    plan_path: Path,
    claude_bin: str,
    env: Mapping[str, str],
    runs_root: Path,
    cancel: threading.Event,
    out: TextIO,
) -> int:
    """Run ``plan`` in ``workspace``; 0 when every task succeeded, 1 otherwise."""
    taskspace.ensure_writable(runs_root)
    plan_run_id = taskspace.new_plan_run_id()
    run_dir = runs_root / plan_run_id
    run_dir.mkdir()  # secrets stay in the 0700 config dirs inside
    user_config = configdir.UserConfig.read(env)
    env = {**env, **user_config.agent_env}  # the user's primaryApiKey, never on disk
    redactor = Redactor.from_env(env).with_secrets(user_config.secrets)
    writer = EventWriter(out, run_dir / "events.jsonl", redactor)
    settings = Settings.from_env(env)
    ctx = RunContext(
        plan_run_id=plan_run_id,
        run_dir=run_dir,
        workspace=workspace,
        claude_bin=claude_bin,
        env=env,
        writer=writer,
        redactor=redactor,
        git_dir=preserve.git_dir_of(workspace, env),
        identity=(settings.git_user_name, settings.git_user_email),
    )
    started = time.monotonic()
    state = _Run(ctx, cancel)
    try:
        writer.emit(
            PlanStart(
                plan_run_id=plan_run_id,
                plan_path=str(plan_path),
                workspace=str(workspace),
                run_dir=str(run_dir),
                stage_count=len(plan.stages),
                task_count=len(plan.tasks),
            )
        )
        for stage in plan.stages:
            state.stage(stage)
    finally:
        orphans.kill_marked(TASK_MARKER, f"{plan_run_id}/", prefix=True)
        results = state.results
        seen = {(r.stage_id, r.task_id) for r in results}
        for stage in plan.stages:  # only after an unexpected error: still report them
            for t in stage.tasks:
                if (t.stage_id, t.id) not in seen:
                    results.append(
                        TaskResult(
                            stage_id=t.stage_id,
                            task_id=t.id,
                            model=t.model,
                            workspace_mode=t.workspace,
                            reason="not run: the runner failed",
                        )
                    )
        duration = time.monotonic() - started
        was_cancelled = cancel.is_set()
        writer.emit(
            PlanFinish(
                plan_run_id=plan_run_id,
                status=overall_status(results, cancelled=was_cancelled),
                duration_s=round(duration, 3),
                counts=counts(results),
            )
        )
        final = pipeline_result(
            plan_run_id=plan_run_id,
            run_dir=str(run_dir),
            results=results,
            duration_s=duration,
            cancelled=was_cancelled,
        )
        # The same compact line as the last event (indent would also switch json to its
        # pure-Python encoder).
        text = redactor(json.dumps(final, ensure_ascii=False, separators=(",", ":"))) + "\n"
        tmp = run_dir / "result.json.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, run_dir / "result.json")
        writer.emit_dict(final)
        writer.close()
    return int(final["exit_code"])
