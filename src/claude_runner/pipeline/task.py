"""One pipeline task from ``task_start`` to ``task_finish``, as steps the stage loop
(``loop.py``) drives.

The steps, in order: ``begin`` (``task_start``), ``prepare`` (prompt, workspace copy,
branch base: may block, so the loop runs it in a helper thread when it copies),
``launch`` (the CLI), ``feed`` / ``output_closed`` (its stdout), ``settle`` (its exit
status), ``conclude`` (preserve the work, sweep leftovers: may block, same rule) and
``finish`` (``task_finish``). Every step but ``prepare`` and ``conclude`` runs on the
loop's thread, so the state needs no lock; those two touch only their own files. A step
never raises: a failure becomes the task's status and reason.

``cancel`` before the launch prevents it; afterwards ``proc.stop`` escalates SIGINT ->
SIGTERM -> SIGKILL (``STOP_GRACE`` seconds apart, in a thread of its own) over the CLI's
process group and every descendant, which ends its output. Every task's environment
carries ``CLAUDE_RUNNER_TASK=<run>/<stage>/<task>`` so processes that escaped the tree
(Bash-tool children in their own sessions, double forks) are found in /proc and killed:
right after a task that failed or was cancelled, and for every task at the end of its
stage.

The CLI always runs with ``--output-format stream-json --verbose`` so the session binds
at every verbosity; its stdout goes line by line to ``<task>.log``. ``task_output``
events: verbosity ``v`` forwards only the final ``result`` message, ``vv`` every line
(``message`` when it is a JSON object, otherwise ``raw`` text).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_runner import proc
from claude_runner.agent import build_agent_env, build_print_argv
from claude_runner.errors import RunnerError
from claude_runner.pipeline import configdir, orphans, preserve, stream, taskspace
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
from claude_runner.redact import Redactor

STOP_GRACE = 3.0
# argv strings are capped at 128 KiB by the kernel; longer prompts go through stdin.
ARGV_PROMPT_LIMIT = 100 * 1024
_STDERR_TAIL = 600
TASK_MARKER = "CLAUDE_RUNNER_TASK"
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


@dataclass(frozen=True)
class RunContext:
    """What every task of one run shares."""

    plan_run_id: str
    run_dir: Path
    workspace: Path
    claude_bin: str
    env: Mapping[str, str]
    writer: EventWriter
    redactor: Redactor
    git_dir: Path | None
    identity: tuple[str, str]


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
    """One task's state and steps (see the module docstring for who calls what)."""

    def __init__(self, task: ResolvedTask, ctx: RunContext) -> None:
        self.task = task
        self.ctx = ctx
        self.paths = taskspace.TaskPaths(ctx.run_dir, task.stage_id, task.id)
        self.result = TaskResult(
            stage_id=task.stage_id,
            task_id=task.id,
            model=task.model,
            workspace_mode=task.workspace,
        )
        self.child: subprocess.Popen[bytes] | None = None
        self.cancel_reason: str | None = None
        self.returncode: int | None = None
        self._started = 0.0
        self._ok = True  # no step failed so far
        self._prepared = False
        self._prompt = ""
        self._base: str | None = None
        self._log_fd = -1
        self._out_fd = -1  # the read end of the CLI's stdout
        self._sink: stream.StreamSink | None = None
        self._marker = f"{ctx.plan_run_id}/{task.stage_id}/{task.id}"
        self._keep_work = task.workspace == "worktree" and ctx.git_dir is not None

    @property
    def prepare_blocks(self) -> bool:
        """Whether ``prepare`` copies a workspace (seconds for a big one)."""
        return self.task.workspace != "shared"

    @property
    def conclude_blocks(self) -> bool:
        """Whether ``conclude`` runs git or sweeps /proc for leftovers."""
        return self._keep_work or self.cancel_reason is not None or not self._succeeded

    @property
    def _succeeded(self) -> bool:
        return self.result.status == "succeeded"

    def _guard(self, step: Callable[[], object]) -> None:
        """Run a step; a failure becomes the task's status and reason."""
        try:
            step()
        except (RunnerError, OSError) as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug: keep the traceback on stderr, still finish
            traceback.print_exc(file=sys.stderr)
            self._fail(f"internal error: {exc!r}")

    def _fail(self, reason: str) -> None:
        self._ok = False
        self.result.status = "failed"
        self.result.reason = reason

    # --- steps --------------------------------------------------------------------
    def begin(self) -> None:
        """Emit ``task_start``."""
        self._started = time.monotonic()
        task, ctx, res, paths = self.task, self.ctx, self.result, self.paths
        res.status = "failed"  # until it succeeds
        cwd = self._cwd()
        res.workspace = str(cwd)
        res.log = paths.log
        res.stderr_log = paths.stderr_log
        ctx.writer.emit(
            TaskStart(
                plan_run_id=ctx.plan_run_id,
                stage_id=task.stage_id,
                task_id=task.id,
                model=task.model,
                workspace_mode=task.workspace,
                workspace=str(cwd),
                log=paths.log,
            )
        )

    def prepare(self) -> None:
        """Read the prompt; copy the workspace and record the branch base if asked."""
        self._guard(self._prepare)

    def _prepare(self) -> None:
        task, ctx, paths = self.task, self.ctx, self.paths
        self._prompt = _read_prompt(ctx, task)
        if task.workspace == "shared":
            self._prepared = True
            return
        git_dir = ctx.git_dir if self._keep_work else None
        head = preserve.head_of(git_dir, ctx.env) if git_dir is not None else None
        taskspace.copy_workspace(ctx.workspace, paths.copy)
        if task.workspace == "snapshot_ro":
            taskspace.make_read_only(paths.copy)
        if git_dir is not None:
            self._base = preserve.snapshot_start(
                git_dir=git_dir,
                head=head,
                copy=paths.copy,
                index=paths.index,
                identity=ctx.identity,
                env=ctx.env,
            )
        self._prepared = True

    def launch(self, config_dir: Path, *, seed_config: bool) -> int | None:
        """Start the CLI with its own ``CLAUDE_CONFIG_DIR``; its stdout's file descriptor,
        or None when it did not start (cancelled, or a step failed). ``seed_config``: the
        config dir is new (each of a stage's concurrency slots has one)."""
        if self.cancel_reason is not None:
            self.result.status, self.result.reason = "cancelled", self.cancel_reason
            return None
        if self._ok:
            self._guard(functools.partial(self._launch, config_dir, seed_config))
        if self.child is None:
            self.output_closed()  # closes the pipe and the log if they were opened
            return None
        return self._out_fd

    def _launch(self, config_dir: Path, seed_config: bool) -> None:
        task, ctx, res, paths = self.task, self.ctx, self.result, self.paths
        res.config_dir = str(config_dir)
        if seed_config:
            configdir.seed_config_dir(config_dir, ctx.env)
        env = build_agent_env(ctx.env, config_dir=config_dir)
        env[TASK_MARKER] = self._marker
        prompt = self._prompt
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
        # The pipe is ours, not Popen's: the loop reads the bare descriptor, and Popen's
        # file object around it cost three system calls per task.
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        self._out_fd = read_end
        stdin = os.open(paths.prompt, os.O_RDONLY | os.O_CLOEXEC) if via_stdin else -1
        err = -1
        try:
            err = os.open(paths.stderr_log, _LOG_FLAGS, 0o644)
            self._log_fd = os.open(paths.log, _LOG_FLAGS, 0o644)
            self.child = proc.spawn(
                argv,
                cwd=self._cwd(),
                env=env,
                stdin=stdin if via_stdin else subprocess.DEVNULL,
                stdout=write_end,
                stderr=err,
            )
        finally:
            for fd in (write_end, err, stdin):
                if fd >= 0:
                    os.close(fd)
        self._sink = stream.StreamSink(
            self._write_log,
            on_message=self._on_message,
            on_line=self._on_line if task.verbosity == "vv" else None,
            masker=ctx.redactor.stream(),
        )

    def _cwd(self) -> Path:
        return self.ctx.workspace if self.task.workspace == "shared" else self.paths.copy

    def _write_log(self, data: bytes) -> None:
        stream.write_all(self._log_fd, data)

    @property
    def read_size(self) -> int:
        return self._sink.read_size if self._sink is not None else stream.MAX_LINE

    def feed(self, chunk: bytes) -> None:
        """A chunk of the CLI's stdout."""
        if self._sink is not None and self._ok:
            self._guard(functools.partial(self._sink.feed, chunk))

    def output_closed(self) -> None:
        """The CLI's stdout reached its end (or the loop gave up on it)."""
        sink = self._sink
        if self._out_fd >= 0:
            os.close(self._out_fd)
            self._out_fd = -1
        if sink is not None:
            self._guard(sink.close)
            for size in sink.stats.overlong:
                self.result.notes.append(
                    f"an output line of {size} bytes exceeded 64 MiB: logged, not parsed"
                )
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1

    def cancel(self, reason: str) -> None:
        """Stop the task (idempotent); a task not yet launched will not launch."""
        if self.cancel_reason is not None:
            return
        self.cancel_reason = reason
        child = self.child
        if child is not None and child.poll() is None:
            threading.Thread(
                target=proc.stop, args=(child,), kwargs={"grace": STOP_GRACE}, daemon=True
            ).start()

    def output_held_open(self) -> None:
        """The CLI has exited, its stdout is still open: kill what holds it (marked
        processes, and any other process with a descriptor on the pipe)."""
        self.result.notes.append(
            "the CLI exited but a process it started kept its output open: killed"
        )
        orphans.kill_marked(TASK_MARKER, self._marker)
        if self._out_fd >= 0:
            orphans.kill(orphans.holding_pipe(os.fstat(self._out_fd).st_ino))

    def settle(self, returncode: int | None) -> None:
        """The status from the CLI's exit (None: it never started)."""
        self.returncode = returncode
        if returncode is None:
            return
        res = self.result
        res.exit_code = returncode
        res.signal = _signal_name(returncode)
        if not self._ok:  # the failure of a step is the reason
            return
        if returncode == 0 and res.is_error is False:
            res.status = "succeeded"
            res.reason = None
            return
        if self.cancel_reason is not None:
            res.status = "cancelled"
            res.reason = self.cancel_reason
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
        tail = _tail(Path(self.paths.stderr_log))
        res.reason = f"{why}; stderr: {tail}" if tail else why

    def conclude(self) -> None:
        """Keep a worktree task's work; sweep what a failed or stopped task left."""
        if self._prepared and self._keep_work:
            self._guard(self._preserve)
        if self.cancel_reason is not None or not self._succeeded:
            # Stopping a CLI can orphan its Bash-tool children: sweep now. Leftovers of
            # tasks that ended normally are swept once per stage (a /proc scan per task
            # would be most of the runner's per-task cost).
            self._guard(self._sweep)
        self.result.duration_s = round(time.monotonic() - self._started, 3)

    def _sweep(self) -> None:
        orphans.kill_marked(TASK_MARKER, self._marker)

    def finish(self) -> None:
        """Emit ``task_finish``."""
        self.ctx.writer.emit(finish_event(self.ctx.plan_run_id, self.result))

    def skip(self, reason: str) -> None:
        """Never started: report it as skipped."""
        self.result.status, self.result.reason = "skipped", reason
        self.finish()

    # --- stream callbacks ------------------------------------------------------------
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

    def _preserve(self) -> None:
        ctx, res, paths = self.ctx, self.result, self.paths
        assert ctx.git_dir is not None  # noqa: S101
        try:
            kept = preserve.preserve_changes(
                git_dir=ctx.git_dir,
                base=self._base,
                copy=paths.copy,
                branch=preserve.branch_name(ctx.plan_run_id, self.task.stage_id, self.task.id),
                patch=paths.patch,
                index=paths.index,
                identity=ctx.identity,
                env=ctx.env,
            )
        except RunnerError as exc:
            res.notes.append(f"changes not preserved: {exc}")
            return
        res.branch = kept.branch
        res.patch = str(kept.patch) if kept.patch else None
        res.changed_files = kept.changed_files


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
