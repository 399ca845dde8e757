"""One pipeline task from ``task_start`` to ``task_finish``, as steps the run's scheduler
(``scheduler.py``) drives. ``TaskRun`` is the one owner of the task's state: only its
methods change its ``TaskResult``.

The steps, in order: ``begin`` (``task_start``), ``prepare`` (prompt, workspace copy,
branch base: may block, so the scheduler runs it in a helper thread when it copies),
``launch`` (the CLI), ``feed`` / ``feed_stderr`` / ``output_closed`` /
``stderr_closed`` (its two pipes), ``settle`` (its exit status), ``conclude``
(preserve the work, check a read-only snapshot, sweep leftovers: may block, same rule)
and ``finish`` (``task_finish``). Every step but ``prepare`` and ``conclude`` runs on
the scheduler's thread, so the state needs no lock; those two touch only their own
files. A step never raises: a failure becomes the task's status, kind and reason.

``cancel`` before the launch prevents it; afterwards ``proc.stop`` escalates SIGINT ->
SIGTERM -> SIGKILL (``STOP_GRACE`` seconds apart, in a thread of its own) over the CLI's
process group and every descendant, which ends its output. Every task's environment
carries ``CLAUDE_RUNNER_TASK=<run>/<stage>/<task>`` so processes that escaped the tree
(Bash-tool children in their own sessions, double forks) are found in /proc and killed:
right after a task that failed or was cancelled, and for every task at the end of its
stage (and by the run's watchman, ``reaper.py``, if the runner itself is killed).

The CLI always runs with ``--output-format stream-json --verbose`` so the session binds
at every verbosity; its stdout goes line by line to ``agent.log``, its stderr to
``stderr.log``, both masked. ``task_output`` events: verbosity ``v`` forwards only the
final ``result`` message, ``vv`` every line (``message`` when it is a JSON object,
otherwise ``raw`` text).
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

from claude_runner import proc, procs
from claude_runner.agent import build_agent_env, build_print_argv
from claude_runner.errors import PreserveError, RunnerError
from claude_runner.pipeline import configdir, preserve, stream, taskspace
from claude_runner.pipeline.events import (
    EventWriter,
    TaskFinish,
    TaskOutput,
    TaskSessionBind,
    TaskStart,
)
from claude_runner.pipeline.result import TaskResult
from claude_runner.pipeline.state import FailureKind, TaskStatus
from claude_runner.plan.models import ResolvedTask
from claude_runner.plan.promptfile import read_prompt_file
from claude_runner.reaper import Watchman
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
    watchman: Watchman
    cancel: threading.Event


def marker_of(plan_run_id: str, stage_id: str = "", task_id: str = "") -> bytes:
    """The environment entry that marks a task's processes (a prefix for a stage or run:
    ``<run>/`` or ``<run>/<stage>/``; the trailing slash keeps ``a`` from matching ``ab``)."""
    value = f"{plan_run_id}/"
    if stage_id:
        value += f"{stage_id}/"
        if task_id:
            value += task_id
    return f"{TASK_MARKER}={value}".encode()


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - _STDERR_TAIL))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


_SUBTYPE_KINDS = {
    "error_max_turns": FailureKind.MAX_TURNS,
    "error_max_budget_usd": FailureKind.BUDGET,
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
        self._failure: tuple[FailureKind, str] | None = None  # a step failed: why
        self._prepared = False
        self._prompt = ""
        self._base: str | None = None
        self._seal: taskspace.Seal | None = None  # snapshot_ro: the copy's seal
        self._log_fd = -1
        self._err_fd = -1
        self._out_fd = -1  # the read ends of the CLI's stdout and stderr
        self._errpipe_fd = -1
        self._sink: stream.StreamSink | None = None
        self._errsink: stream.MaskedLog | None = None
        self._marker = marker_of(ctx.plan_run_id, task.stage_id, task.id)
        self._keep_work = task.workspace == "worktree" and ctx.git_dir is not None

    @property
    def key(self) -> tuple[str, str]:
        return (self.task.stage_id, self.task.id)

    @property
    def prepare_blocks(self) -> bool:
        """Whether ``prepare`` copies a workspace (seconds for a big one)."""
        return self.task.workspace != "shared"

    @property
    def conclude_blocks(self) -> bool:
        """Whether ``conclude`` runs git, walks a snapshot or sweeps /proc for leftovers."""
        return (
            self._keep_work
            or self._seal is not None
            or self.cancel_reason is not None
            or not self._succeeded
        )

    @property
    def _succeeded(self) -> bool:
        return self.result.status == TaskStatus.SUCCEEDED

    @property
    def _ok(self) -> bool:
        return self._failure is None

    def _guard(self, step: Callable[[], object], kind: FailureKind) -> None:
        """Run a step; a failure becomes the task's status, kind and reason."""
        try:
            step()
        except (RunnerError, OSError) as exc:
            self._fail(kind, str(exc))
        except Exception as exc:  # a bug: keep the traceback on stderr, still finish
            traceback.print_exc(file=sys.stderr)
            self._fail(kind, f"internal error: {exc!r}")

    def _fail(self, kind: FailureKind, reason: str) -> None:
        if self._failure is None:
            self._failure = (kind, reason)
        self._set(TaskStatus.FAILED, kind, reason)

    def _set(self, status: TaskStatus, kind: FailureKind | None, reason: str | None) -> None:
        res = self.result
        res.status, res.failure_kind, res.reason = status, kind, reason

    def note(self, text: str) -> None:
        """Something the task's record should say (the scheduler's observations)."""
        self.result.notes.append(text)

    # --- steps --------------------------------------------------------------------
    def begin(self) -> None:
        """Emit ``task_start``."""
        self._started = time.monotonic()
        task, ctx, res, paths = self.task, self.ctx, self.result, self.paths
        # Until it succeeds: a runner killed now leaves no "succeeded" behind.
        self._set(TaskStatus.FAILED, FailureKind.CRASH, "the task did not finish")
        cwd = self._cwd()
        res.workspace = str(cwd)
        res.log = paths.log
        res.stderr_log = paths.stderr_log
        res.workspace_method = "shared" if task.workspace == "shared" else "copy"
        res.read_only = "checked" if task.workspace == "snapshot_ro" else None
        ctx.writer.emit(
            TaskStart(
                plan_run_id=ctx.plan_run_id,
                stage_id=task.stage_id,
                task_id=task.id,
                model=task.model,
                workspace_mode=task.workspace,
                workspace=str(cwd),
                log=paths.log,
                workspace_method=res.workspace_method,
                read_only=res.read_only,
            )
        )

    def prepare(self) -> None:
        """Read the prompt; copy the workspace and record the branch base if asked."""
        try:
            os.makedirs(self.paths.dir, exist_ok=True)
        except OSError as exc:
            self._fail(FailureKind.SETUP_FAILED, f"cannot create {self.paths.dir}: {exc}")
            return
        self._guard(self._prepare, FailureKind.SETUP_FAILED)

    def _prepare(self) -> None:
        task, ctx, paths = self.task, self.ctx, self.paths
        if task.prompt.text is not None:
            self._prompt = task.prompt.text
        else:
            assert task.prompt.file is not None  # noqa: S101 - the plan model guarantees one
            self._prompt = read_prompt_file(ctx.workspace, task.prompt.file)
        if task.workspace == "shared":
            self._prepared = True
            return
        git_dir = ctx.git_dir if self._keep_work else None
        head = preserve.head_of(git_dir, ctx.env) if git_dir is not None else None
        taskspace.copy_workspace(ctx.workspace, paths.copy, cancel=ctx.cancel)
        if task.workspace == "snapshot_ro":
            self._seal = taskspace.make_read_only(paths.copy)
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

    def launch(self, config_dir: Path, *, seed_config: bool) -> tuple[int, int] | None:
        """Start the CLI with its own ``CLAUDE_CONFIG_DIR``; the descriptors of its stdout
        and stderr, or None when it did not start (cancelled, or a step failed).
        ``seed_config``: the config dir is new (each concurrency slot has one)."""
        if self.cancel_reason is not None:
            self._set(TaskStatus.CANCELLED, FailureKind.CANCELLED, self.cancel_reason)
            return None
        if self._ok:
            self._guard(
                functools.partial(self._launch, config_dir, seed_config),
                FailureKind.SETUP_FAILED,
            )
        if self.child is None:
            self.output_closed()  # closes the pipes and logs if they were opened
            self.stderr_closed()
            return None
        return self._out_fd, self._errpipe_fd

    def _launch(self, config_dir: Path, seed_config: bool) -> None:
        task, ctx, res, paths = self.task, self.ctx, self.result, self.paths
        res.config_dir = str(config_dir)
        if seed_config:
            configdir.seed_config_dir(config_dir, ctx.env)
            ctx.watchman.scrub(config_dir / configdir.CREDENTIALS)
        env = build_agent_env(ctx.env, config_dir=config_dir)
        name, _, value = self._marker.decode().partition("=")
        env[name] = value
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
        # The pipes are ours, not Popen's: the scheduler reads the bare descriptors, and
        # Popen's file objects around them cost three system calls per task.
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        self._out_fd = out_r
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self._errpipe_fd = err_r
        stdin = os.open(paths.prompt, os.O_RDONLY | os.O_CLOEXEC) if via_stdin else -1
        try:
            self._err_fd = os.open(paths.stderr_log, _LOG_FLAGS, 0o644)
            self._log_fd = os.open(paths.log, _LOG_FLAGS, 0o644)
            self.child = proc.spawn(
                argv,
                cwd=self._cwd(),
                env=env,
                stdin=stdin if via_stdin else subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
            )
        finally:
            for fd in (out_w, err_w, stdin):
                if fd >= 0:
                    os.close(fd)
        ctx.watchman.group(self.child.pid)
        self._sink = stream.StreamSink(
            self._write_log,
            on_message=self._on_message,
            on_line=self._on_line if task.verbosity == "vv" else None,
            masker=ctx.redactor.stream(),
        )
        self._errsink = stream.MaskedLog(self._write_err, masker=ctx.redactor.stream())

    def _cwd(self) -> Path:
        return self.ctx.workspace if self.task.workspace == "shared" else self.paths.copy

    def _write_log(self, data: bytes) -> None:
        stream.write_all(self._log_fd, data)

    def _write_err(self, data: bytes) -> None:
        stream.write_all(self._err_fd, data)

    @property
    def read_size(self) -> int:
        return self._sink.read_size if self._sink is not None else stream.MAX_LINE

    def feed(self, chunk: bytes) -> None:
        """A chunk of the CLI's stdout."""
        if self._sink is not None and self._ok:
            self._guard(functools.partial(self._sink.feed, chunk), FailureKind.CRASH)

    def feed_stderr(self, chunk: bytes) -> None:
        """A chunk of the CLI's stderr."""
        if self._errsink is not None and self._err_fd >= 0:
            try:
                self._errsink.feed(chunk)
            except OSError as exc:  # the log cannot be written: stop writing it
                self.note(f"writing {self.paths.stderr_log} failed: {exc.strerror}")
                os.close(self._err_fd)
                self._err_fd = -1

    def output_closed(self) -> None:
        """The CLI's stdout reached its end (or the scheduler gave up on it)."""
        sink = self._sink
        if self._out_fd >= 0:
            os.close(self._out_fd)
            self._out_fd = -1
        if sink is not None:
            self._guard(sink.close, FailureKind.CRASH)
            for size in sink.stats.overlong:
                self.note(f"an output line of {size} bytes exceeded 64 MiB: logged, not parsed")
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1

    def stderr_closed(self) -> None:
        """The CLI's stderr reached its end (or the scheduler gave up on it)."""
        if self._errpipe_fd >= 0:
            os.close(self._errpipe_fd)
            self._errpipe_fd = -1
        if self._errsink is not None and self._err_fd >= 0:
            try:
                self._errsink.close()
            except OSError as exc:
                self.note(f"writing {self.paths.stderr_log} failed: {exc.strerror}")
        if self._err_fd >= 0:
            os.close(self._err_fd)
            self._err_fd = -1

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

    def output_held_open(self, pipes: list[int]) -> None:
        """The CLI has exited, its output is still open: kill what holds it (marked
        processes, and any other process with a descriptor on one of ``pipes``)."""
        self.note("the CLI exited but a process it started kept its output open: killed")
        procs.kill_marked(self._marker)
        for fd in pipes:
            procs.kill(procs.holding_pipe(os.fstat(fd).st_ino))

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
            self._set(TaskStatus.SUCCEEDED, None, None)
            return
        if self.cancel_reason is not None:
            self._set(TaskStatus.CANCELLED, FailureKind.CANCELLED, self.cancel_reason)
            return
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
        self._set(
            TaskStatus.FAILED,
            classify(res),
            f"{why}; stderr: {tail}" if tail else why,
        )

    def conclude(self) -> None:
        """Keep a worktree task's work; check a read-only snapshot; sweep what a failed
        or stopped task left."""
        if self._prepared and self._keep_work:
            self._guard(self._preserve, FailureKind.PRESERVE_FAILED)
        if self._prepared and self._seal is not None:
            self._guard(self._check_snapshot, FailureKind.SNAPSHOT_MODIFIED)
        if self.cancel_reason is not None or not self._succeeded:
            # Stopping a CLI can orphan its Bash-tool children: sweep now. Leftovers of
            # tasks that ended normally are swept once per stage (a /proc scan per task
            # would be most of the runner's per-task cost).
            self._guard(self._sweep, FailureKind.CRASH)
        self.result.duration_s = round(time.monotonic() - self._started, 3)

    def _sweep(self) -> None:
        procs.kill_marked(self._marker)

    def _check_snapshot(self) -> None:
        assert self._seal is not None  # noqa: S101
        written = taskspace.snapshot_writes(self.paths.copy, self._seal)
        if written:
            shown = ", ".join(written)
            self._fail(
                FailureKind.SNAPSHOT_MODIFIED,
                f"the read-only snapshot was modified ({shown}); the modified copy is "
                f"kept as evidence in {self.paths.copy}",
            )

    def finish(self) -> None:
        """Emit ``task_finish``."""
        if self.child is not None:
            self.ctx.watchman.ungroup(self.child.pid)
        self.ctx.writer.emit(TaskFinish.of(self.ctx.plan_run_id, self.result))

    def skip(self, reason: str, kind: FailureKind | None = FailureKind.CANCELLED) -> None:
        """Never started: report it as skipped."""
        self._set(TaskStatus.SKIPPED, kind, reason)
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
        except PreserveError:
            raise
        except RunnerError as exc:
            raise PreserveError(f"the task's changes could not be preserved: {exc}") from exc
        res.branch = kept.branch
        res.patch = str(kept.patch) if kept.patch else None
        res.changed_files = kept.changed_files
        if kept.patch is not None:
            res.secrets_in_changes = ctx.redactor.names_in_file(kept.patch)
            if res.secrets_in_changes:
                self.note(
                    "the task's changes contain the value of "
                    + ", ".join(res.secrets_in_changes)
                    + f": review {kept.patch} and the branch {kept.branch} before sharing them"
                )
