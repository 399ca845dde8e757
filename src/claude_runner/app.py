"""The start-up flow, in the seed's order: workspace, GitHub auth, git, Docker-in-Docker,
then the run mode. Everything that can be checked without side effects is checked first,
so a bad command line, plan or environment fails before anything is copied or started.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from claude_runner import agent, gitsetup, log
from claude_runner.cli import Args
from claude_runner.config import Settings
from claude_runner.errors import SIGNAL_EXIT_BASE
from claude_runner.redact import Redactor
from claude_runner.signals import Cancellation, Interrupted


def plan_path(args_path: Path, settings: Settings) -> Path:
    """A relative plan path is read from the tree that becomes the workspace."""
    if args_path.is_absolute():
        return args_path
    base = settings.source_dir if settings.source_dir.is_dir() else settings.workspace_dir
    return base / args_path


def run(args: Args) -> int:
    env = dict(os.environ)
    settings = Settings.from_env(env)
    redactor = Redactor.from_env(env)
    log.setup(debug=args.debug, redactor=redactor)

    if args.print_schema:
        from claude_runner.plan.schema import plan_json_schema  # noqa: PLC0415

        sys.stdout.write(json.dumps(plan_json_schema(), indent=2) + "\n")
        return 0

    plan, path = None, None
    if args.pipeline is not None:
        from claude_runner.plan.loader import load_plan  # noqa: PLC0415
        from claude_runner.plan.models import resolve  # noqa: PLC0415

        path = plan_path(args.pipeline, settings)
        plan = resolve(load_plan(path), cli_model=args.model)
        if args.dry_run:
            from claude_runner.plan.schema import dry_run_document  # noqa: PLC0415

            document = json.dumps(dry_run_document(plan, plan_path=path), indent=2)
            sys.stdout.write(redactor(document) + "\n")
            return 0

    claude_bin = agent.resolve_claude_bin(settings.claude_bin, env)
    agent.check_root_allowed(uid=os.geteuid(), is_sandbox=settings.is_sandbox)
    if settings.enable_dind:
        from claude_runner import dind  # noqa: PLC0415

        dind.check_preconditions(settings)

    with Cancellation() as cancel:
        try:
            with cancel.interruptible():
                workspace = _prepare(settings, env, redactor)
        except Interrupted as stop:
            return SIGNAL_EXIT_BASE + stop.signum
        daemon = None
        try:
            if settings.enable_dind:
                from claude_runner.dind import DockerDaemon  # noqa: PLC0415

                daemon = DockerDaemon.start(settings, notice=log.notice, cancel=cancel.event)
                env.update(daemon.env)
            if cancel.event.is_set():
                code = 1
            elif plan is not None and path is not None:
                from claude_runner.pipeline.executor import run_pipeline  # noqa: PLC0415

                code = run_pipeline(
                    plan,
                    workspace=workspace,
                    plan_path=path,
                    claude_bin=claude_bin,
                    env=env,
                    runs_root=settings.pipeline_root,
                    cancel=cancel.event,
                    out=sys.stdout,
                )
            else:
                code = _run_agent(
                    args,
                    claude_bin=claude_bin,
                    env=env,
                    workspace=workspace,
                    cancel=cancel,
                    supervise=daemon is not None,
                    redactor=redactor,
                )
        finally:
            if daemon is not None:
                daemon.stop()
    if cancel.signum is not None:
        return SIGNAL_EXIT_BASE + cancel.signum
    return code


def _prepare(settings: Settings, env: dict[str, str], redactor: Redactor) -> Path:
    """Start-up steps 1-3: the workspace copy, GitHub auth, git configuration."""
    from claude_runner.workspace import prepare_workspace  # noqa: PLC0415

    workspace = prepare_workspace(settings, notice=log.notice)
    gitsetup.check_gh_auth(
        env, required=settings.require_gh_auth, redact=redactor, warn=log.log.warning
    )
    gitsetup.configure_git(
        env,
        user_name=settings.git_user_name,
        user_email=settings.git_user_email,
        workspace=workspace,
    )
    return workspace


def _run_agent(
    args: Args,
    *,
    claude_bin: str,
    env: dict[str, str],
    workspace: Path,
    cancel: Cancellation,
    supervise: bool,
    redactor: Redactor,
) -> int:
    from claude_runner import modes  # noqa: PLC0415

    if args.task:
        from claude_runner.pipeline.configdir import UserConfig  # noqa: PLC0415

        # The CLI reads the user's own config here: its credentials are secrets too.
        return modes.run_single_prompt(
            claude_bin,
            prompt=args.prompt,
            model=args.model,
            verbosity=args.verbosity,
            env=env,
            workspace=workspace,
            cancel=cancel,
            redactor=redactor.with_secrets(UserConfig.read(env).secrets),
        )
    return modes.run_interactive(
        claude_bin,
        model=args.model,
        env=env,
        workspace=workspace,
        cancel=cancel if supervise else None,
    )
