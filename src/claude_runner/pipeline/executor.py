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
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from claude_runner import log, procs
from claude_runner.errors import RunnerError, WorkspaceError
from claude_runner.pipeline import configdir, graph, preserve, runstate, taskspace
from claude_runner.pipeline.budget import Budget
from claude_runner.pipeline.context import RunContext, marker_of
from claude_runner.pipeline.events import EventWriter, PlanFinish, PlanStart
from claude_runner.pipeline.graph import Node, NodeTemplates, Semantics, Stage
from claude_runner.pipeline.pricing import PriceTable
from claude_runner.pipeline.result import TaskResult, counts, overall_status, pipeline_result
from claude_runner.pipeline.scheduler import Scheduler
from claude_runner.pipeline.task import TaskRun
from claude_runner.pipeline.workspaces import (
    ENV_VAR,
    Workspaces,
    clean_leftovers,
    requested_method,
)
from claude_runner.pipeline.workspaces.cleanup import Claim
from claude_runner.plan.models import ResolvedPlan
from claude_runner.plan.schema import dry_run_document
from claude_runner.reaper import Watchman
from claude_runner.runtime import Runtime

if TYPE_CHECKING:
    from claude_runner.progress import RunObserver


def run_pipeline(
    plan: ResolvedPlan,
    runtime: Runtime,
    *,
    workspace: Path,
    plan_path: Path,
    out: TextIO,
    observers: RunObserver | None = None,
    reports: tuple[str, ...] = (),
) -> int:
    """Run ``plan`` in ``workspace``; 0 when every task succeeded, 1 otherwise.
    ``observers`` see every event and the agents' activity; ``reports`` are written into
    the run directory at the end (and the Markdown one appended to
    ``$GITHUB_STEP_SUMMARY`` when that is set)."""
    runs_root = runtime.settings.pipeline_root
    taskspace.ensure_writable(runs_root)
    modes = {t.workspace for t in plan.tasks} & {"worktree", "snapshot_ro"}
    if modes:
        requested_method(runtime.env)  # a wrong value is a usage error before any work
    _clean_leftover_mounts(runs_root)
    plan_run_id = taskspace.new_plan_run_id()
    run_dir = runs_root / plan_run_id
    run_dir.mkdir()  # secrets stay in the 0700 config dirs inside
    user_config = configdir.UserConfig.read(runtime.env)
    env = dict(runtime.env)
    if runtime.rehearsal is None:  # a rehearsal's agents get the stand-in's key instead
        env.update(user_config.agent_env)  # the user's primaryApiKey, never on disk
    redactor = runtime.redactor.with_secrets(
        {**user_config.secrets, **_env_template_secrets(plan, runtime.env)}
    )
    writer = EventWriter(
        out,
        run_dir / "events.jsonl",
        redactor,
        warn=log.log.warning,
        listeners=(observers.event,) if observers is not None else (),
        rehearsal=runtime.rehearsal is not None,
    )
    settings = runtime.settings
    prices = PriceTable.load(runtime.env.get("PIPELINE_PRICE_TABLE"))
    # Held while the runner lives (the kernel drops it however the runner ends): a run
    # directory in use is never cleaned, nor are its mounts taken for leftovers.
    claim = Claim(run_dir)
    with (
        contextlib.closing(claim),
        Watchman(marker_of(plan_run_id).decode()) as watchman,
        _workspaces(run_dir, workspace, runtime.env, modes) as workspaces,
    ):
        ctx = RunContext(
            plan_run_id=plan_run_id,
            run_dir=run_dir,
            workspace=workspace,
            claude_bin=runtime.claude_bin,
            env=env,
            writer=writer,
            redactor=redactor,
            repo=preserve.open_repository(
                workspace,
                run_dir / "git",
                env=runtime.env,
                identity=(settings.git_user_name, settings.git_user_email),
                cancel=runtime.cancel,
            ),
            watchman=watchman,
            cancel=runtime.cancel,
            prices=prices,
            track_usage=plan.budget_usd is not None,
            rehearsal=runtime.rehearsal,
            observers=observers,
            workspaces=workspaces,
        )
        try:
            code = _run(plan, ctx, plan_path=plan_path)
        finally:
            ctx.repo.close()
    _write_reports(run_dir, reports, runtime)
    return code


def _clean_leftover_mounts(runs_root: Path) -> None:
    """Unmount what runners killed with their watchman left in ``runs_root`` (root only:
    nobody else mounts there)."""
    if os.geteuid() != 0:
        return
    leftovers = clean_leftovers(runs_root)
    for point in leftovers.unmounted:
        log.log.warning(f"unmounted {point}, left by a runner that was killed")
    for problem in leftovers.failed:
        log.log.warning(problem)


@contextlib.contextmanager
def _workspaces(
    run_dir: Path, workspace: Path, env: Mapping[str, str], modes: Collection[str]
) -> Iterator[Workspaces | None]:
    """The run's task workspaces (probed once), released at the end however it ends."""
    if not modes:
        yield None
        return
    # Mounts only as root: in a user namespace, preservation (which reads the workspace
    # from outside it) would see the empty mount point.
    workspaces = Workspaces.open(
        run_dir, workspace, env, modes=modes, namespace_ok=False, claimed=True
    )
    if workspaces.methods.requested != "auto":
        for note in workspaces.methods.notes:
            log.log.warning(f"{ENV_VAR}={workspaces.methods.requested}: {note}")
    try:
        yield workspaces
    finally:
        try:
            workspaces.close()
        except WorkspaceError as exc:
            log.log.warning(str(exc))


def _workspace_methods(ctx: RunContext) -> dict[str, object] | None:
    if ctx.workspaces is None:
        return None
    m = ctx.workspaces.methods
    return {
        "worktree": m.worktree,
        "snapshot_ro": m.snapshot_ro,
        "read_only": m.read_only,
        "notes": list(m.notes),
    }


def _mark_copies(stages: list[Stage]) -> None:
    """Tasks that may run while a task writes the shared workspace get copies: an
    overlay's lower layer must not change while it is mounted."""
    beside = graph.unordered_with(
        stages, lambda n: n.task.workspace == "shared" and not n.task.read_only
    )
    for node in beside:
        if node.task.workspace != "shared":
            node.run.copy_reason = (
                "a task that writes the shared workspace may run at the same time"
            )


def _env_template_secrets(plan: ResolvedPlan, env: Mapping[str, str]) -> dict[str, str]:
    """The runner's variables that the plan's ``env`` values read (``${{ env.NAME }}``):
    masked like the named secrets, whatever they hold."""
    from claude_runner.errors import ExpressionError  # noqa: PLC0415
    from claude_runner.expr import parse_template  # noqa: PLC0415

    found: dict[str, str] = {}
    for task in plan.tasks:
        for _, text in task.env:
            if "${{" not in text:
                continue
            try:
                refs = parse_template(text).references()
            except ExpressionError:
                continue  # the task fails when it renders it
            for path in refs:
                name = path[1] if len(path) > 1 and path[0] == "env" else None
                if isinstance(name, str) and env.get(name):
                    found[name] = env[name]
    return found


def _write_reports(run_dir: Path, formats: tuple[str, ...], runtime: Runtime) -> None:
    from claude_runner.reports import write_reports  # noqa: PLC0415 - only at the end

    try:
        write_reports(run_dir, formats, env=runtime.env)
    except RunnerError as exc:
        log.log.warning(f"the reports could not be written: {exc}")


def _run(plan: ResolvedPlan, ctx: RunContext, *, plan_path: Path) -> int:
    writer = ctx.writer
    started = time.monotonic()
    semantics = Semantics(version=plan.version, run_id=ctx.plan_run_id)

    def make_run(node: Node) -> TaskRun:
        return TaskRun(
            node.task,
            ctx,
            templates=NodeTemplates(semantics, node, ctx.env),
            instance_of=node.parent.task.id if node.parent is not None else None,
            item=node.item,
            needs=tuple(n.ref for n in node.needs),
        )

    stages = graph.build(plan, make_run)
    if ctx.workspaces is not None and "overlay" in (
        ctx.workspaces.methods.worktree,
        ctx.workspaces.methods.snapshot_ro,
    ):
        _mark_copies(stages)
    semantics.index(stages, make_run)
    budget = Budget(plan.budget_usd) if plan.budget_usd is not None else None
    scheduler = Scheduler(
        stages,
        ctx,
        semantics,
        max_concurrency=plan.max_concurrency,
        timeout=plan.timeout_s,
        budget=budget,
    )
    task_count = sum(len(s.nodes) for s in stages)
    try:
        runstate.start(
            ctx.run_dir,
            plan_run_id=ctx.plan_run_id,
            plan_path=plan_path,
            workspace=ctx.workspace,
            plan_document=dry_run_document(plan, plan_path=plan_path),
            rehearsal=ctx.rehearsal is not None,
        )
    except OSError as exc:
        writer.problems.append(f"cannot write the run's state files: {exc}")
    try:
        writer.emit(
            PlanStart(
                plan_run_id=ctx.plan_run_id,
                plan_path=str(plan_path),
                workspace=str(ctx.workspace),
                run_dir=str(ctx.run_dir),
                stage_count=len(plan.stages),
                task_count=task_count,
                version=plan.version,
                rehearsal=ctx.rehearsal is not None,
                max_concurrency=plan.max_concurrency,
                budget_usd=plan.budget_usd,
                workspace_methods=_workspace_methods(ctx),
            )
        )
        scheduler.run()
    finally:
        procs.kill_marked(marker_of(ctx.plan_run_id), prefix=True)
        for config_dir in scheduler.config_dirs:
            for problem in configdir.scrub(config_dir, ctx.redactor):
                log.log.warning(problem)
        _report_unfinished(stages, ctx)
        results = [n.result for s in stages for n in s.nodes if not n.instances]
        extra = {
            "version": plan.version,
            "rehearsal": ctx.rehearsal is not None,
            "budget": budget.summary() if budget else None,
        }
        code = _finish(ctx, results, started, extra)
    return code


def _report_unfinished(stages: list[Stage], ctx: RunContext) -> None:
    """After an unexpected error: every task not yet finished still gets its
    ``task_finish`` (its status says it did not run to the end)."""
    for stage in stages:
        for node in stage.nodes:
            if not node.done and not node.instances:
                if node.run.attempt == 0:
                    node.run.skip("not run: the runner failed")
                else:
                    node.run.note("the runner failed while this task ran")
                    node.run.finish()


def _finish(
    ctx: RunContext, results: list[TaskResult], started: float, extra: dict[str, Any]
) -> int:
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
    final.update(extra)
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
    try:
        runstate.write_atomic(run_dir / "result.json", text)
    except OSError as exc:
        why = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror
        return (
            f"cannot write {run_dir / 'result.json'} ({why}); the result is the last line on stdout"
        )
    return None
