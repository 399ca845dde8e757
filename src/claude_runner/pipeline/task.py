"""One pipeline task from its first ``task_start`` to its ``task_finish``, as steps the
run's scheduler (``scheduler.py``) drives. ``TaskRun`` is the one owner of the task's
state: only its methods change its ``TaskResult``.

An attempt: ``begin`` (``task_start``), ``prepare`` (prompt, workspace copy, branch
base: may block) and ``launch`` (the CLI, a ``CliRun``: starting a process blocks until
it has exec'd), both in a helper thread, then ``launched`` back on the scheduler's
thread; the CLI's pipes (``feed``, ``feed_stderr``,
``output_closed``, ``stderr_closed``), ``cli_exited``; then, while the verdict is a
success and a verify gate is set, ``check`` (blocking) and, when it failed and runs are
left, ``continue_session`` (the same session, ``--resume``); then ``conclude``
(blocking: preserve the work, check a read-only snapshot, sweep leftovers). After an
attempt, ``retry_delay`` says whether another one comes (``retry`` emits
``task_retry`` and moves the attempt's files aside) or ``finish`` emits
``task_finish``. Every step but ``prepare``, ``launch``, ``check`` and ``conclude``
runs on the scheduler's thread, so the state needs no lock; those touch only their own
files and the attempt's fields that the scheduler does not write meanwhile. A step never
raises: a failure becomes the task's status, kind and reason.

``cancel`` and ``time_out`` stop the attempt: before the launch they prevent it (a CLI
that was starting meanwhile is stopped by ``launched``);
afterwards ``proc.stop`` escalates SIGINT -> SIGTERM -> SIGKILL (``STOP_GRACE`` seconds
apart, in a thread of its own) over the CLI's process group and every descendant, and a
running check or copy is stopped through the attempt's ``stop`` event. Every task's
environment carries ``CLAUDE_RUNNER_TASK=<run>/<stage>/<task>`` so processes that
escaped the tree (Bash-tool children in their own sessions, double forks) are found in
/proc and killed: right after an attempt that did not succeed, for every task at the end
of its stage, and by the run's watchman (``reaper.py``) if the runner itself is killed.

The CLI always runs with ``--output-format stream-json --verbose`` so the session binds
at every verbosity. ``task_output`` events: verbosity ``v`` forwards only the final
``result`` message, ``vv`` every line (``message`` when it is a JSON object, otherwise
``raw`` text).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from claude_runner import log, proc, procs
from claude_runner.agent import CliOptions, build_agent_env, build_print_argv
from claude_runner.errors import PreserveError, RunnerError, WorkspaceError
from claude_runner.pipeline import configdir, gate, preserve, retry, runstate, stream, taskspace
from claude_runner.pipeline.classify import classify
from claude_runner.pipeline.clirun import CliRun, Hooks, Outcome
from claude_runner.pipeline.context import RunContext, marker_of
from claude_runner.pipeline.events import (
    TaskCheck,
    TaskFinish,
    TaskOutput,
    TaskRetry,
    TaskSessionBind,
    TaskStart,
)
from claude_runner.pipeline.result import (
    AttemptRecord,
    TaskResult,
    cost_of,
    task_entry,
    usage_of,
)
from claude_runner.pipeline.state import FailureKind, TaskStatus
from claude_runner.plan.promptfile import read_prompt_file
from claude_runner.plan.resolved import ConfigSource, ResolvedTask

if TYPE_CHECKING:
    from claude_runner.pipeline.workspaces import TaskWorkspace
    from claude_runner.progress import StreamActivity

STOP_GRACE = 3.0
FREE_RATE_LIMITED = 8  # retries of 429s caused by the run's own load (see TaskRun._free)
# argv strings are capped at 128 KiB by the kernel; longer prompts go through stdin.
ARGV_PROMPT_LIMIT = 100 * 1024
_STDERR_TAIL = 600


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


@dataclass
class _Attempt:
    """The state of the current attempt."""

    number: int
    started: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)
    stopped: tuple[FailureKind, str] | None = None  # the runner stopped it: why
    stop_pending: bool = False  # stopped while its CLI was starting: launched() stops it
    failure: tuple[FailureKind, str] | None = None  # a step failed: why
    verdict: tuple[TaskStatus, FailureKind | None, str | None] | None = None
    prepared: bool = False
    cli: CliRun | None = None
    cli_runs: int = 0
    after_result: bool = False  # the CLI was stopped after its result, on purpose
    checks: int = 0
    last_check: gate.CheckRun | None = None
    cost: float = 0.0
    cost_estimated: bool = False
    config_dir: Path | None = None
    budget_cap: float | None = None
    retry_after: float | None = None  # the delay the CLI last announced before a retry
    crowded: bool = False  # other CLIs of the run were running when this one ended
    rehearsal_key: str | None = None  # a rehearsal: the key the stand-in knows it by


class Templates(Protocol):
    """How a task's templates render (``graph.NodeTemplates``); raises ExpressionError."""

    def prompt(self, text: str) -> str: ...
    def command(self, text: str) -> str: ...
    def env_value(self, text: str) -> str: ...


class _Plain:
    """No templates (a task run on its own): text as written."""

    def prompt(self, text: str) -> str:
        return text

    def command(self, text: str) -> str:
        return text

    def env_value(self, text: str) -> str:
        return text


class TaskRun:
    """One task's state and steps (see the module docstring for who calls what)."""

    def __init__(
        self,
        task: ResolvedTask,
        ctx: RunContext,
        *,
        templates: Templates | None = None,
        instance_of: str | None = None,
        item: Any = None,
        needs: tuple[str, ...] = (),
    ) -> None:
        self.task = task
        self.ctx = ctx
        self.templates = templates or _Plain()
        self.paths = taskspace.TaskPaths(ctx.run_dir, task.stage_id, task.id)
        self.result = TaskResult(
            stage_id=task.stage_id,
            task_id=task.id,
            model=task.model,
            workspace_mode=task.workspace,
            instance_of=instance_of,
            item=item,
            needs=list(needs),
        )
        self.cancel_reason: str | None = None
        self._at: _Attempt | None = None
        self._started = 0.0
        self._prompt = ""
        self._session_cost = 0.0  # what the current session's CLI last reported in all
        self._activity: StreamActivity | None = None  # a live view: the agent's activity
        self._env: dict[str, str] = {}
        self._check_command = ""
        self._base: preserve.Base | None = None
        self._seal: taskspace.Seal | None = None  # snapshot_ro: the copy's seal
        self._ws: TaskWorkspace | None = None  # the attempt's own workspace, until released
        self._free_retries = 0  # 429s of the run's own load, not counted (see _free)
        # Why this task gets a copy even where overlays work: a task that may write the
        # shared workspace can run at the same time, and an overlay's lower layer must
        # not change while it is mounted. Set by the executor before the run starts.
        self.copy_reason: str | None = None
        self._marker = marker_of(ctx.plan_run_id, task.stage_id, task.id)
        self._keep_work = task.workspace == "worktree"
        self._finished = False

    # --- what the scheduler reads ------------------------------------------------------
    @property
    def key(self) -> tuple[str, str]:
        return (self.task.stage_id, self.task.id)

    @property
    def attempt(self) -> int:
        return self._at.number if self._at is not None else 0

    @property
    def cli(self) -> CliRun | None:
        """The CLI running now, if any."""
        return self._at.cli if self._at is not None else None

    @property
    def attempt_started(self) -> float:
        return self._at.started if self._at is not None else 0.0

    @property
    def conclude_blocks(self) -> bool:
        """Whether ``conclude`` runs git, walks a snapshot or sweeps /proc for leftovers."""
        return (
            self._keep_work or self._seal is not None or self._ws is not None or not self._succeeded
        )

    @property
    def _succeeded(self) -> bool:
        at = self._at
        return at is not None and at.verdict is not None and at.verdict[0] == TaskStatus.SUCCEEDED

    @property
    def read_size(self) -> int:
        cli = self.cli
        return cli.read_size if cli is not None else stream.MAX_LINE

    # --- state changes (here only) ---------------------------------------------------------
    def _guard(self, step: Callable[[], object], kind: FailureKind) -> None:
        """Run a step; a failure becomes the attempt's failure."""
        try:
            step()
        except (RunnerError, OSError) as exc:
            self._fail(kind, str(exc))
        except Exception as exc:  # a bug: keep the traceback on stderr, still finish
            traceback.print_exc(file=sys.stderr)
            self._fail(kind, f"internal error: {exc!r}")

    def _fail(self, kind: FailureKind, reason: str) -> None:
        at = self._at
        if at is not None and at.failure is None:
            at.failure = (kind, reason)
        if at is not None:
            at.verdict = (TaskStatus.FAILED, kind, reason)

    def _set(self, status: TaskStatus, kind: FailureKind | None, reason: str | None) -> None:
        res = self.result
        res.status, res.failure_kind, res.reason = status, kind, reason

    def note(self, text: str) -> None:
        """Something the task's record should say (the scheduler's observations)."""
        self.result.notes.append(text)

    # --- an attempt ----------------------------------------------------------------------
    def begin(self) -> None:
        """Start an attempt: emit ``task_start``."""
        number = self.attempt + 1
        self._at = _Attempt(number)
        if number == 1:
            self._started = time.monotonic()
        task, ctx, res, paths = self.task, self.ctx, self.result, self.paths
        # Until it succeeds: a runner killed now leaves no "succeeded" behind.
        self._set(TaskStatus.FAILED, FailureKind.CRASH, "the task did not finish")
        cwd = self._cwd()
        res.workspace = str(cwd)
        res.log = paths.log
        res.stderr_log = paths.stderr_log
        res.workspace_method, res.read_only = self._planned_method()
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
                attempt=number,
                instance_of=res.instance_of,
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
        task, ctx, paths, at = self.task, self.ctx, self.paths, self._at
        assert at is not None  # noqa: S101 - begin() came first
        if task.prompt.text is not None:
            raw = task.prompt.text
        else:
            assert task.prompt.file is not None  # noqa: S101 - the plan model guarantees one
            raw = read_prompt_file(ctx.workspace, task.prompt.file)
        self._prompt = self.templates.prompt(raw)
        self._env = {k: self.templates.env_value(v) for k, v in task.env}
        if task.check is not None:
            self._check_command = self.templates.command(task.check.run)
        if task.workspace != "shared":
            self._make_workspace(at)
            if self._keep_work:
                if self._base is not None:  # an earlier attempt's, never preserved
                    ctx.repo.discard(self._base)
                self._base = ctx.repo.snapshot_start(paths.copy)
        at.prepared = True

    def _planned_method(self) -> tuple[str, str | None]:
        """(``workspace_method``, ``read_only``) as the run's probe says for this task
        (``task_start``); ``prepare`` corrects them if this task's workspace differs."""
        mode, workspaces = self.task.workspace, self.ctx.workspaces
        if workspaces is None:  # the run has no worktree or snapshot_ro task
            return "shared", None
        return workspaces.methods.of(mode, overlay=self.copy_reason is None)

    def _make_workspace(self, at: _Attempt) -> None:
        """The attempt's workspace: an overlay, a reflink copy or the copy."""
        ctx, paths, res = self.ctx, self.paths, self.result
        # The executor opens the run's workspaces whenever a task needs one of its own.
        assert ctx.workspaces is not None  # noqa: S101
        ws = ctx.workspaces.make(
            self.task.workspace,
            ctx.workspace,
            paths.copy,
            cancel=at.stop,
            copy=self.copy_reason,
        )
        self._ws = ws
        if ws.mounted:  # a killed runner's watchman unmounts it
            ctx.watchman.umount(ws.path)
        self._seal = ws.seal
        res.workspace_method, res.read_only = ws.method, ws.read_only
        res.notes.extend(ws.notes)

    def _release_workspace(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.release()
            self.result.notes.extend(n for n in ws.notes if n not in self.result.notes)

    def launch(
        self, config_dir: Path, *, seed_config: bool, budget_cap: float | None = None
    ) -> CliRun | None:
        """Start the CLI with its own ``CLAUDE_CONFIG_DIR``; None when it did not start
        (stopped before, or a step failed). ``seed_config``: the config dir is new (each
        concurrency slot has one); ``budget_cap``: the plan budget's reservation."""
        at = self._at
        assert at is not None  # noqa: S101
        at.config_dir, at.budget_cap = config_dir, budget_cap
        if at.stopped is not None:
            at.verdict = (self._stopped_status(), *at.stopped)
            return None
        if at.failure is None:
            self._guard(lambda: self._launch(self._prompt, resume=None), FailureKind.SETUP_FAILED)
            if seed_config and at.cli is not None:
                self.ctx.watchman.scrub(config_dir / configdir.CREDENTIALS)
        return at.cli

    def launched(self) -> None:
        """Back on the scheduler's thread after ``launch`` ran in a helper: an attempt
        stopped while its CLI was starting (``cancel``, ``time_out`` found no CLI to
        stop) stops that CLI now."""
        at = self._at
        if at is not None and at.stop_pending and at.cli is not None:
            at.stop_pending = False
            self._stop_cli(at.cli)

    def continue_session(self) -> CliRun | None:
        """After a failed check: the agent gets the check's output in its session."""
        at = self._at
        assert at is not None  # noqa: S101
        assert at.last_check is not None  # noqa: S101
        check = self.task.check
        assert check is not None  # noqa: S101
        prompt = gate.feedback_prompt(
            self._check_command, at.last_check, runs_left=check.attempts - at.checks
        )
        at.verdict = None
        self._guard(lambda: self._launch(prompt, resume=self.result.session_id), FailureKind.CRASH)
        return at.cli

    def _launch(self, prompt: str, *, resume: str | None) -> None:
        task, ctx, paths, at = self.task, self.ctx, self.paths, self._at
        assert at is not None  # noqa: S101
        assert at.config_dir is not None  # noqa: S101
        if at.cli_runs == 0:
            configdir.seed_config_dir(at.config_dir, ctx.env, credentials=ctx.rehearsal is None)
            self.result.config_dir = str(at.config_dir)
        env = build_agent_env(ctx.env, config_dir=at.config_dir)
        env.update(self._env)
        name, _, value = self._marker.decode().partition("=")
        env[name] = value
        if ctx.rehearsal is not None:
            if at.rehearsal_key is None:  # a verify-gate round keeps the attempt's script
                from claude_runner.rehearsal import script_of  # noqa: PLC0415 - rehearsals only

                at.rehearsal_key = ctx.rehearsal.assign(
                    script_of(task.rehearse), attempt=at.number, task=f"{task.stage_id}/{task.id}"
                )
            env = ctx.rehearsal.agent_env(env, at.rehearsal_key)
        via_stdin = len(prompt.encode("utf-8", "surrogateescape")) > ARGV_PROMPT_LIMIT
        if via_stdin:
            paths.prompt.write_text(prompt, encoding="utf-8")
        argv = build_print_argv(
            ctx.claude_bin,
            prompt=None if via_stdin else prompt,
            output_format="stream-json",
            verbose=True,
            options=self._cli_options(resume),
        )
        at.cli = CliRun(
            argv,
            env=env,
            cwd=self._cwd(),
            stdin_file=paths.prompt if via_stdin else None,
            log=paths.log,
            stderr_log=paths.stderr_log,
            redactor=ctx.redactor,
            hooks=Hooks(
                on_session=self._on_session,
                on_result=self._on_result,
                on_line=self._on_line if task.verbosity == "vv" else None,
                on_assistant=self._on_assistant if ctx.track_usage else None,
                on_block=self._on_block if ctx.observers is not None else None,
            ),
        )
        if ctx.observers is not None:
            from claude_runner.progress import StreamActivity  # noqa: PLC0415

            self._activity = StreamActivity()
        at.cli_runs += 1
        ctx.watchman.group(at.cli.child.pid)

    def _cli_options(self, resume: str | None) -> CliOptions:
        c, task, at = self.task.controls, self.task, self._at
        assert at is not None  # noqa: S101
        # --max-budget-usd counts one CLI run: a verify-gate round gets what is left.
        caps = [x - at.cost for x in (c.max_budget_usd, at.budget_cap) if x is not None]
        return CliOptions(
            model=task.model,
            allowed_tools=c.allowed_tools,
            disallowed_tools=c.disallowed_tools,
            permission_mode=c.permission_mode,
            append_system_prompt=c.append_system_prompt,
            mcp_config=self._private_file("mcp.json", c.mcp_config),
            add_dirs=c.add_dirs,
            effort=c.effort,
            fallback_model=c.fallback_model,
            settings=self._private_file("settings.json", c.settings),
            max_turns=c.max_turns,
            max_budget_usd=max(0.01, min(caps)) if caps else None,
            json_schema=task.output_schema_json,
            resume=resume,
        )

    def _private_file(self, name: str, value: ConfigSource | None) -> str | None:
        """A workspace path as given (relative to the task's cwd), or inline JSON
        written to a private (0600) file in the task's directory."""
        if value is None:
            return None
        if value.inline_json is None:
            return value.file
        path = Path(self.paths.dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value.inline_json)
        return str(path)

    def _cwd(self) -> Path:
        return self.ctx.workspace if self.task.workspace == "shared" else self.paths.copy

    # --- the CLI's pipes -------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        cli = self.cli
        if cli is not None and self._at is not None and self._at.failure is None:
            self._guard(lambda: cli.feed(chunk), FailureKind.CRASH)

    def feed_stderr(self, chunk: bytes) -> None:
        cli = self.cli
        if cli is not None:
            cli.feed_stderr(chunk)

    def output_closed(self) -> None:
        cli = self.cli
        if cli is None:
            return
        overlong: list[int] = []
        self._guard(lambda: overlong.extend(cli.output_closed()), FailureKind.CRASH)
        for size in overlong:
            self.note(f"an output line of {size} bytes exceeded 64 MiB: logged, not parsed")

    def stderr_closed(self) -> None:
        cli = self.cli
        if cli is not None:
            cli.stderr_closed()
            self.result.notes.extend(cli.notes)
            cli.notes.clear()

    def output_held_open(self, pipes: list[int]) -> None:
        """The CLI has exited, its output is still open: kill what holds it (marked
        processes, and any other process with a descriptor on one of ``pipes``)."""
        self.note("the CLI exited but a process it started kept its output open: killed")
        procs.kill_marked(self._marker)
        for fd in pipes:
            procs.kill(procs.holding_pipe(os.fstat(fd).st_ino))

    # --- stopping ---------------------------------------------------------------------------
    def cancel(self, reason: str, kind: FailureKind = FailureKind.CANCELLED) -> None:
        """Stop the task for good (idempotent): it is not retried."""
        if self.cancel_reason is not None:
            return
        self.cancel_reason = reason
        self._stop(kind, reason)

    def time_out(self, kind: FailureKind, reason: str) -> None:
        """Stop the current attempt: its timeout or idle timeout expired."""
        self._stop(kind, reason)

    def stop_after_result(self) -> None:
        """The CLI printed its result but does not exit: stop it, keep the result."""
        at = self._at
        if at is None or at.cli is None:
            return
        at.after_result = True
        self.note("the CLI did not exit after its result: stopped")
        self._stop_cli(at.cli)

    def _stop(self, kind: FailureKind, reason: str) -> None:
        at = self._at
        if at is None or at.stopped is not None:
            return
        at.stopped = (kind, reason)
        at.stop.set()
        if at.cli is not None:
            self._stop_cli(at.cli)
        else:
            at.stop_pending = True

    def _stopped_status(self) -> TaskStatus:
        at = self._at
        assert at is not None  # noqa: S101
        assert at.stopped is not None  # noqa: S101
        return TaskStatus.CANCELLED if at.stopped[0] == FailureKind.CANCELLED else TaskStatus.FAILED

    @staticmethod
    def _stop_cli(cli: CliRun) -> None:
        if cli.child.poll() is None:
            threading.Thread(
                target=proc.stop, args=(cli.child,), kwargs={"grace": STOP_GRACE}, daemon=True
            ).start()

    # --- after the CLI ----------------------------------------------------------------------
    def cli_exited(self, returncode: int) -> None:
        """The CLI run is over (exited, pipes closed): its verdict."""
        at, res = self._at, self.result
        assert at is not None  # noqa: S101
        assert at.cli is not None  # noqa: S101
        cli = at.cli
        cli.returncode = returncode
        res.exit_code = returncode
        res.signal = _signal_name(returncode)
        self._add_spend(cli)
        at.cli = None
        if at.failure is not None:
            return
        if at.stopped is not None and not at.after_result:
            at.verdict = (self._stopped_status(), *at.stopped)
            return
        clean_exit = returncode == 0 or at.after_result
        if clean_exit and res.is_error is False:
            at.verdict = self._output_verdict(cli.outcome)
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
        verdict = classify(
            cli.outcome.result,
            returncode=returncode,
            stderr_tail=tail,
            output_required=self.task.output_schema_json is not None,
            last_api_retry=cli.outcome.last_api_retry,
        )
        at.retry_after = verdict.retry_after_s
        # A result that says success with a non-zero exit (not stopped by us) is a crash.
        at.verdict = (
            TaskStatus.FAILED,
            verdict.kind or FailureKind.CRASH,
            f"{why}; stderr: {tail}" if tail else why,
        )

    def _output_verdict(
        self, outcome: Outcome
    ) -> tuple[TaskStatus, FailureKind | None, str | None]:
        if self.task.output_schema_json is None:
            return (TaskStatus.SUCCEEDED, None, None)
        schema = self.task.output_schema
        from claude_runner.pipeline import outputs  # noqa: PLC0415 - jsonschema is heavy

        message = outcome.result or {}
        problem = outputs.problem(message.get("structured_output"), schema)
        if problem is not None:
            return (TaskStatus.FAILED, FailureKind.OUTPUT_INVALID, problem)
        self.result.output = message.get("structured_output")
        return (TaskStatus.SUCCEEDED, None, None)

    def _add_spend(self, cli: CliRun) -> None:
        at, res = self._at, self.result
        assert at is not None  # noqa: S101
        message = cli.outcome.result
        cost = cost_of(message) if message is not None else None
        usage = usage_of(message) if message is not None else {}
        if cost is not None:
            # A resumed run (a verify-gate round) reports the whole session's cost.
            cost, self._session_cost = max(0.0, cost - self._session_cost), cost
        else:  # killed before its result: what its stream's usage costs
            usage = {}
            cost = 0.0
            for model, used in cli.outcome.usage_by_message.values():
                cost += self.ctx.prices.of(model or self.task.model).cost(used)
                for k, v in used.items():
                    usage[k] = usage.get(k, 0) + v
            at.cost_estimated = at.cost_estimated or cost > 0
            res.cost_estimated = res.cost_estimated or cost > 0
        at.cost += cost
        res.total_cost_usd = round((res.total_cost_usd or 0.0) + cost, 6)
        for k, v in usage.items():
            res.usage[k] = res.usage.get(k, 0) + v

    @property
    def wants_check(self) -> bool:
        """The CLI succeeded and a verify gate has runs left."""
        at, check = self._at, self.task.check
        return (
            check is not None
            and at is not None
            and at.stopped is None
            and at.verdict is not None
            and at.verdict[0] == TaskStatus.SUCCEEDED
            and at.checks < check.attempts
        )

    def check(self) -> None:
        """Run the verify gate once (blocking) and emit ``task_check``."""
        self._guard(self._check, FailureKind.CHECK_FAILED)

    def _check(self) -> None:
        at, check, ctx = self._at, self.task.check, self.ctx
        assert at is not None  # noqa: S101
        assert check is not None  # noqa: S101
        at.checks += 1
        env = build_agent_env(ctx.env, config_dir=at.config_dir)
        env.update(self._env)
        name, _, value = self._marker.decode().partition("=")
        env[name] = value
        run = gate.run_check(
            self._check_command,
            number=len(self.result.checks) + 1,
            cwd=self._cwd(),
            env=env,
            log=Path(self.paths.dir, f"check-{len(self.result.checks) + 1}.log"),
            timeout=check.timeout_s,
            stop=at.stop,
            redactor=ctx.redactor,
        )
        at.last_check = run
        self.result.checks.append(
            {
                "check": run.number,
                "attempt": at.number,
                "exit_code": run.exit_code,
                "duration_s": run.duration_s,
                "passed": run.passed,
                "log": run.log,
            }
        )
        ctx.writer.emit(
            TaskCheck(
                plan_run_id=ctx.plan_run_id,
                stage_id=self.task.stage_id,
                task_id=self.task.id,
                attempt=run.number,
                exit_code=run.exit_code,
                duration_s=run.duration_s,
                passed=run.passed,
                log=run.log,
            )
        )
        if at.stopped is not None:
            at.verdict = (self._stopped_status(), *at.stopped)
        elif not run.passed:
            how = "timed out" if run.timed_out else f"exited with code {run.exit_code}"
            at.verdict = (
                TaskStatus.FAILED,
                FailureKind.CHECK_FAILED,
                f"the check `{check.run}` {how} ({at.checks} of {check.attempts} runs); "
                f"output: {run.log}",
            )

    @property
    def wants_continue(self) -> bool:
        """The check failed and runs are left: the agent gets another turn."""
        at, check = self._at, self.task.check
        return (
            check is not None
            and at is not None
            and at.stopped is None
            and at.verdict is not None
            and at.verdict[1] == FailureKind.CHECK_FAILED
            and at.checks < check.attempts
            and self.result.session_id is not None
        )

    def conclude(self) -> None:
        """Keep a worktree task's work (unless another attempt follows); check a read-only
        snapshot; sweep what an unsuccessful attempt left."""
        at = self._at
        assert at is not None  # noqa: S101
        if at.verdict is None:  # never launched and nothing said why
            at.verdict = (TaskStatus.FAILED, FailureKind.CRASH, "the CLI did not start")
        if at.prepared and self._seal is not None:
            self._guard(self._check_snapshot, FailureKind.SNAPSHOT_MODIFIED)
        if at.prepared and self._keep_work and self._next_delay() is None:
            self._guard(self._preserve, FailureKind.PRESERVE_FAILED)
        # After the task's own processes: a mount still in use is detached (with a note).
        self._guard(self._release_workspace, FailureKind.CRASH)
        if not self._succeeded:
            # Stopping a CLI can orphan its Bash-tool children: sweep now. Leftovers of
            # tasks that ended normally are swept once per stage (a /proc scan per task
            # would be most of the runner's per-task cost).
            self._guard(self._sweep, FailureKind.CRASH)

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

    # --- between attempts ---------------------------------------------------------------------
    def end_attempt(self) -> float | None:
        """Record the attempt; the seconds until the next one, or None when this was the
        last (the result then holds the task's outcome)."""
        at = self._at
        assert at is not None  # noqa: S101
        assert at.verdict is not None  # noqa: S101
        status, kind, reason = at.verdict
        self.result.attempts.append(
            AttemptRecord(
                attempt=at.number,
                status=status,
                failure_kind=kind,
                reason=reason,
                exit_code=self.result.exit_code,
                duration_s=round(time.monotonic() - at.started, 3),
                cost_usd=round(at.cost, 6),
                cost_estimated=at.cost_estimated,
                session_id=self.result.session_id,
                log=self.paths.log,
            )
        )
        self._set(status, kind, reason)
        self.result.duration_s = round(time.monotonic() - self._started, 3)
        if self.ctx.rehearsal is not None and at.rehearsal_key is not None:
            self.ctx.rehearsal.release(at.rehearsal_key)
        delay = self._next_delay()
        if delay is not None and self._free(at):
            self._free_retries += 1
        return delay

    def _next_delay(self) -> float | None:
        at = self._at
        assert at is not None  # noqa: S101
        assert at.verdict is not None  # noqa: S101
        if self.cancel_reason is not None or at.verdict[0] == TaskStatus.SUCCEEDED:
            return None
        return retry.retry_delay(
            self.task.retries,
            attempt=at.number - self._free_retries - self._free(at),
            kind=at.verdict[1],
            retry_after=at.retry_after,
            rng=self.ctx.rng,
        )

    def _free(self, at: _Attempt) -> int:
        """1 when this attempt is a 429 the run's own load caused: it ended
        ``rate_limited`` while other CLIs of the run were running (the scheduler lowers
        the concurrency on it), so it does not count against ``retries.max``; at most
        ``FREE_RATE_LIMITED`` of those per task, so it stays bounded."""
        kind = at.verdict[1] if at.verdict is not None else None
        crowded = kind == FailureKind.RATE_LIMITED and at.crowded
        return int(crowded and self._free_retries < FREE_RATE_LIMITED)

    def ended_crowded(self) -> None:
        """The scheduler: other CLIs of the run were running when this attempt's ended."""
        if self._at is not None:
            self._at.crowded = True

    @property
    def attempt_spend(self) -> tuple[float, bool]:
        """What the current attempt cost, and whether that was estimated."""
        at = self._at
        return (at.cost, at.cost_estimated) if at is not None else (0.0, False)

    def retry(self, delay: float) -> None:
        """Another attempt follows in ``delay`` seconds: say so, and move this attempt's
        files aside (``attempt-<n>/``) so the next one starts from the task's start."""
        at = self._at
        assert at is not None  # noqa: S101
        assert at.verdict is not None  # noqa: S101
        ctx, task = self.ctx, self.task
        aside = Path(self.paths.dir, f"attempt-{at.number}")
        aside.mkdir(exist_ok=True)
        names = ("workspace", "workspace.upper", "agent.log", "stderr.log", "prompt.txt")
        for name in (*names, "git-index"):
            src = Path(self.paths.dir, name)
            if os.path.lexists(src):
                os.rename(src, aside / name)
        for record in self.result.attempts:
            if record.attempt == at.number:
                record.log = str(aside / "agent.log")
        self._seal = None
        self._session_cost = 0.0
        self.result.session_id = None
        self.result.is_error = None
        self.result.num_turns = None
        ctx.writer.emit(
            TaskRetry(
                plan_run_id=ctx.plan_run_id,
                stage_id=task.stage_id,
                task_id=task.id,
                attempt=at.number + 1,
                kind=at.verdict[1],
                delay_s=delay,
                reason=at.verdict[2],
            )
        )

    # --- the end --------------------------------------------------------------------------
    def finish(self) -> None:
        """Emit ``task_finish`` (once)."""
        if self._finished:
            return
        self._finished = True
        if self.result.secrets_in_changes:
            log.log.warning(self.result.notes[-1])
        if self._at is not None:  # it started: it has a directory
            try:
                runstate.task_finished(
                    Path(self.paths.dir), task_entry(self.result), self.ctx.redactor
                )
            except OSError as exc:
                self.note(f"cannot write the task's result.json: {exc.strerror}")
        self.ctx.writer.emit(TaskFinish.of(self.ctx.plan_run_id, self.result))

    def skip(self, reason: str, kind: FailureKind | None = FailureKind.CANCELLED) -> None:
        """Never started: report it as skipped."""
        self._set(TaskStatus.SKIPPED, kind, reason)
        self.finish()

    # --- stream callbacks -------------------------------------------------------------------
    def _on_session(self, sid: str) -> None:
        res, ctx, task = self.result, self.ctx, self.task
        if res.session_id is not None:
            return  # a continuation of the same session
        res.session_id = sid
        ctx.writer.emit(
            TaskSessionBind(
                plan_run_id=ctx.plan_run_id,
                stage_id=task.stage_id,
                task_id=task.id,
                session_id=sid,
            )
        )

    def _on_result(self, message: dict[str, Any]) -> None:
        self.result.take_result_message(message)
        if self._activity is not None and self.ctx.observers is not None:
            changed = self._activity.result(message)
            self.ctx.observers.activity(self.task.stage_id, self.task.id, *changed)
        if self.task.verbosity == "v":
            self._output(message, None)

    def _on_assistant(self, outcome: Outcome) -> None:
        """Token usage is recorded by the CliRun itself (for a killed run's estimate)."""

    def _on_block(self, block: bytes) -> None:
        activity, observers = self._activity, self.ctx.observers
        if activity is None or observers is None:
            return
        changed = activity.feed(block)
        if changed is not None:
            observers.activity(self.task.stage_id, self.task.id, *changed)

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
        ctx, paths = self.ctx, self.paths
        base, self._base = self._base, None  # single use
        assert base is not None  # noqa: S101 - a prepared worktree task has one
        if ctx.repo.note is not None:
            self.note(f"{ctx.repo.note}: the changes are kept as a patch (no branch)")
        try:
            kept = ctx.repo.preserve(
                base,
                branch=preserve.branch_name(ctx.plan_run_id, self.task.stage_id, self.task.id),
                patch=paths.patch,
                # An overlay's upper layer lists every path the task may have changed:
                # only those are examined instead of the whole tree.
                changed_paths=self._changed_paths(),
            )
        except PreserveError as exc:
            if isinstance(exc.kept, preserve.Preserved):  # what could be kept is reported
                self._report_kept(exc.kept)
            if ctx.cancel.is_set():  # a signal stopped it: the task stays cancelled
                self.note(f"changes not preserved ({exc}); the task's copy is {paths.copy}")
                return
            raise PreserveError(f"the task's changes could not all be preserved: {exc}") from exc
        self._report_kept(kept)

    def _changed_paths(self) -> list[str] | None:
        """The paths an overlay's upper layer lists, or None: examine the whole tree."""
        if self._ws is None:
            return None
        try:
            return self._ws.changed_paths()
        except (OSError, WorkspaceError) as exc:
            self.note(
                f"the overlay's changes could not be listed ({exc}): the whole tree is scanned"
            )
            return None

    def _report_kept(self, kept: preserve.Preserved) -> None:
        ctx, res = self.ctx, self.result
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
