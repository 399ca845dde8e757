"""``claude-pipeline``: commands about pipeline runs, apart from ``claude-runner`` whose
words are prompts.

    claude-pipeline report RUN --format markdown|junit|html [-o FILE]
    claude-pipeline logs RUN TASK [--follow]
    claude-pipeline clean RUN [RUN ...]

RUN is a run directory, or a plan run id (or ``latest``) under
``$PIPELINE_WORKSPACES_ROOT``. Each subcommand is a ``(configure, run)`` pair in
``COMMANDS``, so ``resume`` and ``merge`` join the same way. Errors are
the project's ``RunnerError``s: one line ``claude-pipeline: error: ...`` and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from claude_runner import __version__
from claude_runner.config import Settings
from claude_runner.errors import EXIT_OK, RunDirError, RunnerError, UsageError
from claude_runner.redact import Redactor

PROG = "claude-pipeline"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a UsageError (one line, exit 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def resolve_run(text: str, env: Mapping[str, str]) -> Path:
    """RUN: a directory, else an id (or ``latest``) under PIPELINE_WORKSPACES_ROOT."""
    given = Path(text)
    if given.is_dir():
        return given
    root = Settings.from_env(env).pipeline_root
    if text == "latest":
        runs = (
            sorted(p for p in root.glob("*") if (p / "events.jsonl").exists())
            if root.is_dir()
            else []
        )
        if not runs:
            raise RunDirError(f"no runs under {root} (PIPELINE_WORKSPACES_ROOT)")
        return runs[-1]
    if "/" not in text and (root / text).is_dir():
        return root / text
    raise RunDirError(
        f"run not found: {text!r} is neither a directory nor a run id under {root} "
        "(PIPELINE_WORKSPACES_ROOT)"
    )


# --- report -------------------------------------------------------------------------------


def _configure_report(p: argparse.ArgumentParser) -> None:
    from claude_runner.reports import FORMATS  # noqa: PLC0415

    p.add_argument("run", metavar="RUN", help="run directory, run id, or 'latest'")
    p.add_argument("--format", "-f", required=True, choices=FORMATS, help="report format")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def _report(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from claude_runner.reports import render  # noqa: PLC0415
    from claude_runner.reports.rundir import read_run  # noqa: PLC0415

    run_dir = resolve_run(args.run, env)
    view = read_run(run_dir)
    out = Path(args.output) if args.output else None
    text = render(
        view,
        args.format,
        redact=Redactor.from_env(env),
        out_dir=(out.resolve().parent if out else Path.cwd()),
    )
    if out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise RunDirError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return EXIT_OK


# --- logs ---------------------------------------------------------------------------------


def _configure_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory, run id, or 'latest'")
    p.add_argument("task", metavar="TASK", help="stage/task, or a task id unique in the run")
    p.add_argument("--follow", "-f", action="store_true", help="follow until the task finishes")


def _logs(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from claude_runner.reports import terminal  # noqa: PLC0415
    from claude_runner.reports.rundir import read_run  # noqa: PLC0415

    run_dir = resolve_run(args.run, env)
    view = read_run(run_dir)
    task = view.find(args.task)
    renderer = terminal.TerminalRenderer(
        colour=terminal.use_colour(sys.stdout, env), redact=Redactor.from_env(env)
    )
    log = task.log or run_dir / "tasks" / task.stage_id / task.task_id / "agent.log"
    if args.follow and task.status in ("unfinished", "pending") and not view.complete:
        terminal.follow(
            run_dir, task.stage_id, task.task_id, log, out=sys.stdout, renderer=renderer
        )
        return EXIT_OK
    if task.log is None:
        raise RunDirError(f"task {task.key} has no agent log (status: {task.status})")
    for a in task.attempts[:-1]:
        if a.log is not None:
            sys.stdout.write(renderer.paint("dim", f"── attempt {a.attempt}") + "\n")
            terminal.print_log(a.log, sys.stdout, renderer)
    if len(task.attempts) > 1:
        sys.stdout.write(renderer.paint("dim", f"── attempt {task.attempts[-1].attempt}") + "\n")
    terminal.print_log(task.log, sys.stdout, renderer)
    return EXIT_OK


# --- clean --------------------------------------------------------------------------------


def _configure_clean(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory, run id, or 'latest'")


def _clean(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from claude_runner.copytree import remove_tree  # noqa: PLC0415
    from claude_runner.pipeline.workspaces.cleanup import in_use, mounts_under  # noqa: PLC0415

    run_dirs = [resolve_run(text, env) for text in args.runs]
    for run_dir in run_dirs:
        if not (run_dir / "run.json").exists() and not (run_dir / "events.jsonl").exists():
            raise RunDirError(f"{run_dir} is not a pipeline run directory (no run.json)")
        if in_use(run_dir):
            raise RunDirError(f"{run_dir} is in use by a running runner; not removed")
        inside = mounts_under(run_dir)
        if inside:
            # Removing through a mount would delete what lies under it (the workspace).
            raise RunDirError(
                f"{run_dir} has a mount in it ({inside[0].point}); not "
                "removed: unmount it (or start any run on the same root, which unmounts "
                "what killed runners left), then clean again"
            )
    for run_dir in run_dirs:
        remove_tree(run_dir)
        if run_dir.exists():
            raise RunDirError(f"cannot remove all of {run_dir}")
        sys.stdout.write(f"removed {run_dir}\n")
    return EXIT_OK


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]
COMMANDS: tuple[Command, ...] = (
    ("report", _configure_report, _report),
    ("logs", _configure_logs, _logs),
    ("clean", _configure_clean, _clean),
)
_HELP = {
    "report": "write a report (markdown, junit, html) of a run",
    "logs": "print a task's transcript (assistant text, tool calls, results)",
    "clean": "remove finished runs' directories (never one in use or with a mount in it)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Reports, transcripts and clean-up of claude-runner pipeline runs.",
        epilog="RUN: a run directory, a plan run id under $PIPELINE_WORKSPACES_ROOT, or latest.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for name, configure, run in COMMANDS:
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        configure(p)
        p.set_defaults(handler=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``claude-pipeline``."""
    env = dict(os.environ)
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        code: int = args.handler(args, env)
    except RunnerError as exc:
        sys.stderr.write(f"{PROG}: error: {Redactor.from_env(env)(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader left, not an error of ours
        sys.stderr.close()
        return EXIT_OK
    return code
