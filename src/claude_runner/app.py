"""The start-up flow, in the seed's order: workspace, GitHub auth, git, Docker-in-Docker,
then the run mode. Everything that can be checked without side effects is checked first,
so a bad command line, plan or environment fails before anything is copied or started.

The environment is read here once, into a ``Runtime`` that every mode receives.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from claude_runner import agent, gitsetup, log
from claude_runner.config import Settings
from claude_runner.errors import SIGNAL_EXIT_BASE, PlanError, Problem
from claude_runner.options import STDIN_PLAN, Args
from claude_runner.redact import Redactor
from claude_runner.runtime import Runtime
from claude_runner.signals import Cancellation, Interrupted

if TYPE_CHECKING:
    from claude_runner.plan.models import ResolvedPlan
    from claude_runner.rehearsal import Rehearsal


def plan_path(args_path: Path, settings: Settings) -> Path:
    """A relative plan path is read from the tree that becomes the workspace."""
    if args_path.is_absolute():
        return args_path
    return _plan_base(settings) / args_path


def _plan_base(settings: Settings) -> Path:
    return settings.source_dir if settings.source_dir.is_dir() else settings.workspace_dir


def run(args: Args) -> int:
    if args.print_schema is not None:
        from claude_runner.plan.schema import schema_text  # noqa: PLC0415

        sys.stdout.write(schema_text(args.print_schema))
        return 0

    env = dict(os.environ)
    settings = Settings.from_env(env)
    redactor = Redactor.from_env(env)
    log.setup(debug=args.debug, redactor=redactor)

    plan, path = None, None
    if args.pipeline is not None:
        plan, path = _load(args, settings)
        if args.dry_run:
            from claude_runner.plan.schema import dry_run_document, render_graph  # noqa: PLC0415

            if args.graph is not None:
                document = render_graph(plan, args.graph)
            else:
                document = json.dumps(dry_run_document(plan, plan_path=path), indent=2)
            sys.stdout.write(redactor(document).rstrip("\n") + "\n")
            return 0

    claude_bin = agent.resolve_claude_bin(
        settings.claude_bin, env, explicit=bool(env.get("CLAUDE_BIN"))
    )
    agent.check_root_allowed(uid=os.geteuid(), is_sandbox=settings.is_sandbox)
    if settings.enable_dind:
        from claude_runner import dind  # noqa: PLC0415

        dind.check_preconditions(settings)

    with Cancellation() as cancel, _rehearsal(args) as rehearsal:
        runtime = Runtime(
            settings=settings,
            env=env,
            redactor=redactor,
            claude_bin=claude_bin,
            cancel=cancel.event,
            rehearsal=rehearsal,
        )
        try:
            with cancel.interruptible():
                workspace = _prepare(runtime)
        except Interrupted as stop:
            return SIGNAL_EXIT_BASE + stop.signum
        code = _run_mode(args, runtime, cancel, workspace=workspace, plan=plan, path=path)
    if cancel.signum is not None:
        return SIGNAL_EXIT_BASE + cancel.signum
    return code


@contextlib.contextmanager
def _rehearsal(args: Args) -> Iterator[Rehearsal | None]:
    """The stand-in model for ``--rehearse``, stopped when the run ends."""
    if not args.rehearse:
        yield None
        return
    from claude_runner.redact import SECRET_ENV_VARS  # noqa: PLC0415
    from claude_runner.rehearsal import Rehearsal  # noqa: PLC0415 - only when rehearsing

    with Rehearsal(secret_names=SECRET_ENV_VARS) as rehearsal:
        log.notice(
            f"rehearsal: the agents talk to a stand-in model at {rehearsal.api.url}, "
            "with no real credentials; nothing is charged"
        )
        yield rehearsal


def _load(args: Args, settings: Settings) -> tuple[ResolvedPlan, Path]:
    from claude_runner.plan.loader import load_plan, load_plan_bytes  # noqa: PLC0415
    from claude_runner.plan.models import resolve  # noqa: PLC0415

    assert args.pipeline is not None  # noqa: S101 - the caller checked
    if args.pipeline == STDIN_PLAN:
        path = Path("<stdin>")
        plan = load_plan_bytes(sys.stdin.buffer.read(), str(path))
    else:
        path = plan_path(args.pipeline, settings)
        if not args.pipeline.is_absolute() and not os.path.lexists(path):
            raise PlanError(
                [
                    Problem(
                        str(path),
                        None,
                        None,
                        "",
                        "plan file not found; a relative --pipeline path is read from "
                        f"{_plan_base(settings)}, the tree that becomes the workspace "
                        "(SOURCE_WORKSPACE_DIR when it exists, else WORKSPACE_DIR): give an "
                        "absolute path, or set those variables",
                    )
                ]
            )
        plan = load_plan(path)
    return resolve(plan, cli_model=args.model), path


def _run_mode(
    args: Args,
    runtime: Runtime,
    cancel: Cancellation,
    *,
    workspace: Path,
    plan: ResolvedPlan | None,
    path: Path | None,
) -> int:
    """Docker-in-Docker (when enabled) around the run mode; the daemon stops last."""
    daemon = None
    try:
        if runtime.settings.enable_dind:
            from claude_runner.dind import DockerDaemon  # noqa: PLC0415

            daemon = DockerDaemon.start(runtime.settings, notice=log.notice, cancel=cancel.event)
            runtime = runtime.with_env(daemon.env)
        if cancel.event.is_set():
            return 1
        if plan is not None and path is not None:
            return _run_pipeline(args, runtime, plan=plan, path=path, workspace=workspace)
        from claude_runner import modes  # noqa: PLC0415

        if args.task:
            return modes.run_single_prompt(
                runtime,
                prompt=args.prompt,
                model=args.model,
                verbosity=args.verbosity,
                workspace=workspace,
            )
        return modes.run_interactive(
            runtime, model=args.model, workspace=workspace, supervise=daemon is not None
        )
    finally:
        if daemon is not None:
            daemon.stop()


def _run_pipeline(
    args: Args, runtime: Runtime, *, plan: ResolvedPlan, path: Path, workspace: Path
) -> int:
    """The pipeline with its observers (the live view, OpenTelemetry) and its reports."""
    from claude_runner.pipeline.executor import run_pipeline  # noqa: PLC0415
    from claude_runner.progress import make_observers  # noqa: PLC0415

    observers = make_observers(args.progress, sys.stderr, runtime.env)
    log_stream = getattr(next(iter(observers.observers), None), "log_stream", None)
    if callable(log_stream):  # the live table: the runner's messages go above it
        log.setup(debug=args.debug, redactor=runtime.redactor, stream=log_stream())
    try:
        return run_pipeline(
            plan,
            runtime,
            workspace=workspace,
            plan_path=path,
            out=sys.stdout,
            observers=observers if observers else None,
            reports=args.reports,
        )
    finally:
        observers.close()
        log.setup(debug=args.debug, redactor=runtime.redactor)


def _prepare(runtime: Runtime) -> Path:
    """Start-up steps 1-3: the workspace copy, GitHub auth, git configuration."""
    from claude_runner.workspace import prepare_workspace  # noqa: PLC0415

    settings = runtime.settings
    workspace = prepare_workspace(settings, notice=log.notice, cancel=runtime.cancel)
    gitsetup.check_gh_auth(
        runtime.env,
        required=settings.require_gh_auth,
        redact=runtime.redactor,
        warn=log.log.warning,
    )
    gitsetup.configure_git(
        runtime.env,
        user_name=settings.git_user_name,
        user_email=settings.git_user_email,
        workspace=workspace,
    )
    return workspace
