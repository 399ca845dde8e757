"""Running one pipeline task: workspace, private config dir, the CLI, its stream, its end.

A ``TaskRun`` lives in one worker thread (``run``); the executor may call ``cancel`` from
another thread at any time. Cancelling before the CLI starts prevents the start;
afterwards ``proc.stop`` escalates SIGINT -> SIGTERM -> SIGKILL (``STOP_GRACE`` seconds
apart) over the CLI's process group and every descendant, which closes the pipe and
ends the stream. Every task's environment carries ``CLAUDE_RUNNER_TASK=<run>/<stage>/
<task>`` so processes that escaped the tree (Bash-tool children in their own sessions,
double forks) are found in /proc and killed: right after a task that failed or was
cancelled, and for every task at the end of its stage.

The CLI always runs with ``--output-format stream-json --verbose`` so the session binds
at every verbosity; its stdout goes line by line to ``<task>.log``. ``task_output``
events: verbosity ``v`` forwards only the final ``result`` message, ``vv`` every line
(``message`` when it is a JSON object, otherwise ``raw`` text).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_runner import proc
from claude_runner.agent import build_agent_env, build_print_argv
from claude_runner.errors import RunnerError
from claude_runner.pipeline import orphans, preserve, stream, taskspace
from claude_runner.pipeline.events import (
    EventWriter,
    TaskFinish,
    TaskOutput,
    TaskSessionBind,
    TaskStart,
)
from claude_runner.pipeline.result import TaskResult
from claude_runner.plan.models import ResolvedTask
from claude_runner.plan.promptfile import read_prompt_file

STOP_GRACE = 3.0
# argv strings are capped at 128 KiB by the kernel; longer prompts go through stdin.
ARGV_PROMPT_LIMIT = 100 * 1024
_STDERR_TAIL = 600
_PIPE_BUFFER = 1024 * 1024
TASK_MARKER = "CLAUDE_RUNNER_TASK"


@dataclass(frozen=True)
class RunContext:
    """What every task of one run shares."""

    plan_run_id: str
    run_dir: Path
    workspace: Path
    claude_bin: str
    env: Mapping[str, str]
    writer: EventWriter
    secrets: tuple[bytes, ...]
    git_dir: Path | None
    identity: tuple[str, str]
    watchdog: orphans.Watchdog


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _read_prompt(ctx: RunContext, task: ResolvedTask) -> str:
    if task.prompt.text is not None:
        return task.prompt.text
    assert task.prompt.file is not None  # noqa: S101 - the plan model guarantees one source
    return read_prompt_file(ctx.workspace, task.prompt.file)


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - _STDERR_TAIL))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


class TaskRun:
    """One task from start to ``task_finish``."""

    def __init__(self, task: ResolvedTask, ctx: RunContext) -> None:
        self.slot = 0  # which of the stage's config dirs it uses; set before run()
        self.task = task
        self.ctx = ctx
        self.paths = taskspace.TaskPaths.of(ctx.run_dir, task.stage_id, task.id)
        self.result = TaskResult(
            stage_id=task.stage_id,
            task_id=task.id,
            model=task.model,
            workspace_mode=task.workspace,
        )
        self._lock = threading.Lock()
        self._cancel_reason: str | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._marker = f"{ctx.plan_run_id}/{task.stage_id}/{task.id}"
        self._index = self.paths.patch.with_suffix(".index")  # temporary git index

    # --- called from the executor's thread ----------------------------------------
    def cancel(self, reason: str) -> None:
        """Stop the task (idempotent); a task not yet started will not start."""
        with self._lock:
            if self._cancel_reason is not None:
                return
            self._cancel_reason = reason
            child = self._child
        if child is not None and child.poll() is None:
            threading.Thread(
                target=proc.stop, args=(child,), kwargs={"grace": STOP_GRACE}, daemon=True
            ).start()

    # --- the worker thread --------------------------------------------------------
    def run(self) -> TaskResult:
        started = time.monotonic()
        res = self.result
        res.status = "failed"
        try:
            self._run()
        except (RunnerError, OSError) as exc:
            res.reason = str(exc)
        except Exception as exc:  # a bug: keep the traceback on stderr, still finish
            traceback.print_exc(file=sys.stderr)
            res.reason = f"internal error: {exc!r}"
        finally:
            if self._cancel_reason is not None or res.status != "succeeded":
                # Stopping a CLI can orphan its Bash-tool children: sweep now. Leftovers
                # of tasks that ended normally are swept once per stage (a /proc scan
                # per task would be most of the runner's per-task cost).
                orphans.kill_marked(TASK_MARKER, self._marker)
            res.duration_s = round(time.monotonic() - started, 3)
            self._finish_event()
        return res

    def _workspace(self) -> Path:
        return self.ctx.workspace if self.task.workspace == "shared" else self.paths.copy

    def _run(self) -> None:
        task, ctx, res, paths = self.task, self.ctx, self.result, self.paths
        cwd = self._workspace()
        res.workspace = str(cwd)
        res.log = str(paths.log)
        res.stderr_log = str(paths.stderr_log)
        ctx.writer.emit(
            TaskStart(
                plan_run_id=ctx.plan_run_id,
                stage_id=task.stage_id,
                task_id=task.id,
                model=task.model,
                workspace_mode=task.workspace,
                workspace=str(cwd),
                log=str(paths.log),
            )
        )
        paths.log.parent.mkdir(parents=True, exist_ok=True)
        prompt = _read_prompt(ctx, task)
        base = None
        keep_work = task.workspace == "worktree" and ctx.git_dir is not None
        if task.workspace != "shared":
            head = preserve.head_of(ctx.git_dir, ctx.env) if keep_work and ctx.git_dir else None
            taskspace.copy_workspace(ctx.workspace, paths.copy)
            if task.workspace == "snapshot_ro":
                taskspace.make_read_only(paths.copy)
            if keep_work and ctx.git_dir is not None:
                base = preserve.snapshot_start(
                    git_dir=ctx.git_dir,
                    head=head,
                    copy=paths.copy,
                    index=self._index,
                    identity=ctx.identity,
                    env=ctx.env,
                )
        try:
            self._run_agent(prompt, cwd)
        finally:
            if keep_work:
                self._preserve(base)

    def _run_agent(self, prompt: str, cwd: Path) -> None:
        task, ctx, res, paths = self.task, self.ctx, self.result, self.paths
        config_dir = taskspace.config_slot(ctx.run_dir, task.stage_id, self.slot)
        res.config_dir = str(config_dir)
        taskspace.seed_config_dir(config_dir, ctx.env)
        env = build_agent_env(ctx.env, config_dir=config_dir)
        env[TASK_MARKER] = self._marker
        via_stdin = len(prompt.encode("utf-8", "surrogateescape")) > ARGV_PROMPT_LIMIT
        if via_stdin:
            paths.prompt.write_text(prompt, encoding="utf-8")
        argv = build_print_argv(
            ctx.claude_bin,
            prompt=None if via_stdin else prompt,
            model=task.model,
            output_format="stream-json",
            verbose=True,
        )
        with contextlib.ExitStack() as stack:
            stdin = (
                stack.enter_context(paths.prompt.open("rb")).fileno()
                if via_stdin
                else subprocess.DEVNULL
            )
            err = stack.enter_context(paths.stderr_log.open("wb"))
            log = stack.enter_context(paths.log.open("wb", buffering=_PIPE_BUFFER))
            with self._lock:
                if self._cancel_reason is not None:
                    res.status = "cancelled"
                    res.reason = self._cancel_reason
                    return
                child = proc.spawn(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=err.fileno(),
                )
                self._child = child
            assert child.stdout is not None  # noqa: S101
            stack.callback(child.stdout.close)
            # Popen's reader has an 8 KiB buffer; a larger one halves the read calls.
            reader = stack.enter_context(
                open(child.stdout.fileno(), "rb", buffering=_PIPE_BUFFER, closefd=False)
            )
            ctx.watchdog.watch(self, child, self.output_held_open)
            try:
                stats = stream.pump(
                    reader,
                    log,
                    on_message=self._on_message,
                    on_line=self._on_line if task.verbosity == "vv" else None,
                    secrets=ctx.secrets,
                )
            finally:
                ctx.watchdog.forget(self)
            returncode = child.wait()
        for size in stats.overlong:
            res.notes.append(f"an output line of {size} bytes exceeded 64 MiB: logged, not parsed")
        self._settle(returncode)

    def output_held_open(self) -> None:
        """Called by the watchdog: the CLI has exited, its stdout is still open."""
        self.result.notes.append(
            "the CLI exited but a process it started kept its output open: killed"
        )
        orphans.kill_marked(TASK_MARKER, self._marker)

    def _settle(self, returncode: int) -> None:
        res = self.result
        res.exit_code = returncode
        res.signal = _signal_name(returncode)
        with self._lock:
            cancelled = self._cancel_reason
        if returncode == 0 and res.is_error is False:
            res.status = "succeeded"
            res.reason = None
            return
        if cancelled is not None:
            res.status = "cancelled"
            res.reason = cancelled
            return
        res.status = "failed"
        if res.is_error:
            why = "the CLI reported an error"
            if res.result:
                why += f": {res.result[:300]}"
        elif res.is_error is None and res.num_turns is None:
            how = f"killed by {res.signal}" if res.signal else f"exit code {returncode}"
            why = f"no result message from the CLI ({how})"
        else:
            why = f"the CLI exited with code {returncode}"
        tail = _tail(self.paths.stderr_log)
        res.reason = f"{why}; stderr: {tail}" if tail else why

    def _on_message(self, message: dict[str, Any]) -> None:
        res, ctx, task = self.result, self.ctx, self.task
        if stream.is_result(message):
            res.take_result_message(message)
            if task.verbosity == "v":
                self._output(message, None)
            return
        sid = stream.session_id_of_init(message)
        if sid is not None and res.session_id is None:
            res.session_id = sid
            ctx.writer.emit(
                TaskSessionBind(
                    plan_run_id=ctx.plan_run_id,
                    stage_id=task.stage_id,
                    task_id=task.id,
                    session_id=sid,
                )
            )

    def _on_line(self, line: bytes) -> None:
        message = stream.parse_object(line)
        self._output(message, None if message is not None else line.decode("utf-8", "replace"))

    def _output(self, message: dict[str, Any] | None, raw: str | None) -> None:
        self.ctx.writer.emit(
            TaskOutput(
                plan_run_id=self.ctx.plan_run_id,
                stage_id=self.task.stage_id,
                task_id=self.task.id,
                message=message,
                raw=raw,
            )
        )

    def _preserve(self, base: str | None) -> None:
        ctx, res, paths = self.ctx, self.result, self.paths
        assert ctx.git_dir is not None  # noqa: S101
        try:
            kept = preserve.preserve_changes(
                git_dir=ctx.git_dir,
                base=base,
                copy=paths.copy,
                branch=preserve.branch_name(ctx.plan_run_id, self.task.stage_id, self.task.id),
                patch=paths.patch,
                index=self._index,
                identity=ctx.identity,
                env=ctx.env,
            )
        except RunnerError as exc:
            res.notes.append(f"changes not preserved: {exc}")
            return
        res.branch = kept.branch
        res.patch = str(kept.patch) if kept.patch else None
        res.changed_files = kept.changed_files

    def _finish_event(self) -> None:
        res, ctx = self.result, self.ctx
        ctx.writer.emit(finish_event(ctx.plan_run_id, res))


def finish_event(plan_run_id: str, res: TaskResult) -> TaskFinish:
    return TaskFinish(
        plan_run_id=plan_run_id,
        stage_id=res.stage_id,
        task_id=res.task_id,
        status=res.status,
        exit_code=res.exit_code,
        signal=res.signal,
        is_error=res.is_error,
        reason=res.reason,
        duration_s=res.duration_s,
        session_id=res.session_id,
        branch=res.branch,
        patch=res.patch,
        changed_files=res.changed_files,
    )
