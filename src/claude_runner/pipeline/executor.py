"""Run a resolved plan: its tasks as a graph (``scheduler.py``, ``task.py``), events on
``out``, the result at the end.

Event order: ``plan_start``; per stage ``stage_start``, per task ``task_start``,
``task_session_bind``, ``task_output``*, ``task_finish``; ``stage_finish``;
``plan_finish``; then the ``pipeline_result`` line. Stages and tasks that never run still
get ``stage_start``/``stage_finish`` and a ``task_finish`` with status ``skipped`` (no
``task_start``), so a consumer sees every task finish exactly once.

Failure policy (the failing task's ``on_error``): ``fail_fast`` starts no new task,
cancels the running tasks (status ``cancelled``) and skips the rest; ``continue`` runs
everything. A signal to the runner (``Runtime.cancel``) stops running tasks the same
way. Return 0 when every task succeeded, else 1 (the caller maps a signal to
128 + signum).

The result always arrives: whatever happens while the tasks run (a bug included), every
task gets its ``task_finish``, the run its ``plan_finish`` and result line on stdout, and
``result.json`` is written when the disk allows (a full disk is one line on stderr).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path
from typing import TextIO

from claude_runner import log, procs
from claude_runner.pipeline import configdir, preserve, taskspace
from claude_runner.pipeline.events import EventWriter, Listener, PlanFinish, PlanStart
from claude_runner.pipeline.result import TaskResult, counts, overall_status, pipeline_result
from claude_runner.pipeline.scheduler import Node, Scheduler, Stage
from claude_runner.pipeline.state import TaskStatus
from claude_runner.pipeline.task import RunContext, TaskRun, marker_of
from claude_runner.plan.models import ResolvedPlan
from claude_runner.reaper import Watchman
from claude_runner.runtime import Runtime


def build_graph(plan: ResolvedPlan, ctx: RunContext) -> list[Stage]:
    """The plan's stages and task nodes: each task of a stage needs every task of the
    previous stage, and a sequential stage chains its tasks."""
    stages: list[Stage] = []
    previous: list[Node] = []
    for resolved in plan.stages:
        stage = Stage(resolved.id, resolved.mode, resolved.max_parallel)
        for task in resolved.tasks:
            node = Node(TaskRun(task, ctx), stage)
            node.needs = list(previous)
            if resolved.mode == "sequential" and stage.nodes:
                node.needs.append(stage.nodes[-1])
            for need in node.needs:
                need.dependents.append(node)
            node.waiting = len(node.needs)
            stage.nodes.append(node)
        stage.left = len(stage.nodes)
        stages.append(stage)
        previous = stage.nodes
    return stages


def run_pipeline(
    plan: ResolvedPlan,
    runtime: Runtime,
    *,
    workspace: Path,
    plan_path: Path,
    out: TextIO,
    listeners: tuple[Listener, ...] = (),
) -> int:
    """Run ``plan`` in ``workspace``; 0 when every task succeeded, 1 otherwise."""
    runs_root = runtime.settings.pipeline_root
    taskspace.ensure_writable(runs_root)
    plan_run_id = taskspace.new_plan_run_id()
    run_dir = runs_root / plan_run_id
    run_dir.mkdir()  # secrets stay in the 0700 config dirs inside
    user_config = configdir.UserConfig.read(runtime.env)
    env = {**runtime.env, **user_config.agent_env}  # the user's primaryApiKey, never on disk
    redactor = runtime.redactor.with_secrets(user_config.secrets)
    writer = EventWriter(
        out,
        run_dir / "events.jsonl",
        redactor,
        warn=log.log.warning,
        listeners=listeners,
    )
    settings = runtime.settings
    with Watchman(marker_of(plan_run_id).decode()) as watchman:
        ctx = RunContext(
            plan_run_id=plan_run_id,
            run_dir=run_dir,
            workspace=workspace,
            claude_bin=runtime.claude_bin,
            env=env,
            writer=writer,
            redactor=redactor,
            git_dir=preserve.git_dir_of(workspace, runtime.env),
            identity=(settings.git_user_name, settings.git_user_email),
            watchman=watchman,
            cancel=runtime.cancel,
        )
        return _run(plan, ctx, plan_path=plan_path)


def _run(plan: ResolvedPlan, ctx: RunContext, *, plan_path: Path) -> int:
    writer, cancel = ctx.writer, ctx.cancel
    started = time.monotonic()
    stages = build_graph(plan, ctx)
    scheduler = Scheduler(
        stages,
        ctx,
        max_concurrency=None,
        abort_reason=lambda: "cancelled by a signal to the runner" if cancel.is_set() else None,
    )
    results = [n.run.result for s in stages for n in s.nodes]
    try:
        writer.emit(
            PlanStart(
                plan_run_id=ctx.plan_run_id,
                plan_path=str(plan_path),
                workspace=str(ctx.workspace),
                run_dir=str(ctx.run_dir),
                stage_count=len(plan.stages),
                task_count=len(results),
            )
        )
        scheduler.run()
    finally:
        procs.kill_marked(marker_of(ctx.plan_run_id), prefix=True)
        for config_dir in scheduler.config_dirs:
            configdir.scrub(config_dir, ctx.redactor)
        _report_unfinished(stages, ctx)
        code = _finish(ctx, results, started)
    return code


def _report_unfinished(stages: list[Stage], ctx: RunContext) -> None:
    """After an unexpected error: every task not yet finished still gets its
    ``task_finish`` (its status says it did not run to the end)."""
    for stage in stages:
        for node in stage.nodes:
            if not node.done:
                res = node.run.result
                if res.status == TaskStatus.SKIPPED:
                    node.run.skip("not run: the runner failed")
                else:
                    node.run.note("the runner failed while this task ran")
                    node.run.finish()


def _finish(ctx: RunContext, results: list[TaskResult], started: float) -> int:
    writer = ctx.writer
    duration = time.monotonic() - started
    was_cancelled = ctx.cancel.is_set()
    writer.emit(
        PlanFinish(
            plan_run_id=ctx.plan_run_id,
            status=overall_status(results, cancelled=was_cancelled),
            duration_s=round(duration, 3),
            counts=counts(results),
        )
    )
    notes = list(writer.problems)
    final = pipeline_result(
        plan_run_id=ctx.plan_run_id,
        run_dir=str(ctx.run_dir),
        results=results,
        duration_s=duration,
        cancelled=was_cancelled,
        notes=notes,
    )
    code = int(final["exit_code"])
    # The same compact line as the last event (indent would also switch json to its
    # pure-Python encoder).
    text = ctx.redactor(json.dumps(final, ensure_ascii=False, separators=(",", ":"))) + "\n"
    problem = _write_result(ctx.run_dir, text)
    if problem is not None:
        final["notes"] = [*notes, problem]
        log.log.error(problem)
        code = 1  # the run's record is incomplete
    writer.emit_dict(final)
    writer.close()
    return code


def _write_result(run_dir: Path, text: str) -> str | None:
    """Write ``result.json`` atomically; the problem, when it could not be written."""
    tmp = run_dir / "result.json.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, run_dir / "result.json")
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        why = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror
        return (
            f"cannot write {run_dir / 'result.json'} ({why}); the result is the last line on stdout"
        )
    return None
