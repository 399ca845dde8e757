"""The command-line front: parse arguments, run, turn RunnerError into one line + exit code.

Runner options and the agent's task words share one command line (as in the seed):
runner options are picked out wherever they stand, ``-v``/``-vv`` among the task words set
the output format, everything else is the prompt. ``--`` ends option parsing.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from claude_runner import __version__
from claude_runner.config import ENV_VARS
from claude_runner.errors import EXIT_OK, RunnerError, UsageError
from claude_runner.options import STDIN_PLAN, Args

__all__ = ["Args", "main", "parse_args"]

SCHEMA_VERSIONS = ("v1", "v2")
_VALUED = {"--model", "--pipeline", "--progress", "--report", "--graph"}
PROGRESS_MODES = ("auto", "live", "plain", "off")
GRAPH_FORMATS = ("mermaid", "dot")
_FLAGS = {"--debug", "--dry-run", "--rehearse", "--print-schema", "--version", "--help", "-h"}
_VERBOSITY = {"-v": "v", "-vv": "vv"}

EXIT_CODES = (
    ("0", "success: the agent (every pipeline task) succeeded"),
    ("1", "the agent or at least one pipeline task failed"),
    ("2", "usage, plan validation or start-up error (nothing was run)"),
    ("128+N", "ended by signal N (130 for SIGINT, 143 for SIGTERM)"),
)


def _help_text() -> str:
    width = max(len(name) for name, _, _ in ENV_VARS)
    env_lines = "\n".join(
        f"  {name:<{width}}  {meaning}" + (f" (default: {default})" if default else "")
        for name, default, meaning in ENV_VARS
    )
    codes = "\n".join(f"  {code:<6} {meaning}" for code, meaning in EXIT_CODES)
    return f"""\
usage: claude-runner [--debug] [--model MODEL] [--rehearse] [-v|-vv] [TASK WORDS...]
       claude-runner [--debug] [--model MODEL] [--rehearse] --pipeline PLAN|-
                     [--dry-run [--graph mermaid|dot]] [--progress MODE] [--report FORMATS]
       claude-runner --print-schema [v1|v2] | --version | --help

Run the Claude Code CLI headless in a prepared workspace.

modes:
  no task words          interactive session (claude --dangerously-skip-permissions)
  TASK WORDS...          one prompt: claude -p "<words joined by spaces>"
  --pipeline PLAN        a YAML pipeline plan (JSON events on stdout)

options:
  --model MODEL          sonnet, opus, haiku or a full model id (claude-...); in a
                         pipeline it replaces defaults.model
  -v                     single prompt: --output-format json
  -vv                    single prompt: --verbose --output-format stream-json
  --pipeline PLAN        plan file; a relative path is read from the tree that becomes
                         the workspace (SOURCE_WORKSPACE_DIR, else WORKSPACE_DIR);
                         - reads the plan from standard input
  --dry-run              with --pipeline: validate, print the resolved plan, run nothing
  --graph mermaid|dot    with --dry-run: print the task graph for a diagram
  --rehearse             run the real CLI against a built-in stand-in model, for $0 (no
                         key needed; scripted by each task's rehearse: in a v2 plan)
  --progress MODE        with --pipeline: live progress on stderr: auto (a live table on
                         a terminal, plain lines elsewhere), live, plain, off
  --report FORMATS       with --pipeline: write reports into the run directory at its
                         end: a comma-separated list of html, junit, markdown
  --print-schema [V]     print the JSON Schema of plan format V (v1 or v2; default v2)
  --debug                more diagnostics on stderr
  --version              print the version
  -h, --help             this help
  --                     everything after it is a task word (a prompt may start with -)

environment:
{env_lines}

exit codes:
{codes}
"""


def _suggest(option: str) -> str:
    close = difflib.get_close_matches(option, sorted(_VALUED | _FLAGS), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _scan(argv: Sequence[str]) -> tuple[dict[str, str | bool], list[str], str]:
    """Split the command line into runner options, task words and the verbosity."""
    opts: dict[str, str | bool] = {}
    task: list[str] = []
    verbosity = "text"
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if item == "--":
            task += items[i:]
            break
        name, eq, inline = item.partition("=")
        if name in _VALUED:
            if eq:
                value = inline
            elif i < len(items):
                value, i = items[i], i + 1
            else:
                raise UsageError(f"{name} needs a value")
            if not value:
                raise UsageError(f"{name} needs a non-empty value")
            opts[name] = value
        elif item == "--print-schema":
            version = items[i] if i < len(items) and items[i] in SCHEMA_VERSIONS else "v2"
            i += 1 if i < len(items) and items[i] in SCHEMA_VERSIONS else 0
            opts[item] = version
        elif item in _FLAGS:
            opts[item] = True
        elif item in _VERBOSITY:
            verbosity = _VERBOSITY[item]
        elif item.startswith("-") and item != "-":
            raise UsageError(
                f"unknown option {item!r}{_suggest(name)} (to pass it to the agent as a "
                "task word, put it after --)"
            )
        else:
            task.append(item)
    return opts, task, verbosity


def _pipeline_options(
    opts: dict[str, str | bool], *, pipeline: bool
) -> tuple[str, tuple[str, ...], Literal["mermaid", "dot"] | None]:
    """``--progress``, ``--report`` and ``--graph``: checked, and only with a pipeline."""
    for name in ("--progress", "--report"):
        if name in opts and not pipeline:
            raise UsageError(f"{name} goes with --pipeline")
    progress = str(opts.get("--progress", "auto"))
    if progress not in PROGRESS_MODES:
        raise UsageError(
            f"--progress {progress!r} is not supported; use one of: {', '.join(PROGRESS_MODES)}"
        )
    graph = opts.get("--graph")
    if graph is not None and graph not in GRAPH_FORMATS:
        raise UsageError(f"--graph {graph!r} is not supported; use mermaid or dot")
    if graph is not None and not opts.get("--dry-run"):
        raise UsageError("--graph goes with --dry-run (it prints the plan's graph, runs nothing)")
    reports: tuple[str, ...] = ()
    report = opts.get("--report")
    if isinstance(report, str):
        from claude_runner.reports import parse_formats  # noqa: PLC0415 - only when asked

        reports = parse_formats(report)
    if graph == "dot":
        return progress, reports, "dot"
    return progress, reports, "mermaid" if graph == "mermaid" else None


def parse_args(argv: Sequence[str]) -> Args | str:
    """Parse the command line. Returns ``Args``, or the text to print for
    --help/--version. Raises UsageError for anything wrong."""
    opts, task, verbosity = _scan(argv)
    if opts.get("--help") or opts.get("-h"):
        return _help_text()
    if opts.get("--version"):
        return f"claude-runner {__version__}\n"
    model = opts.get("--model")
    if isinstance(model, str):
        from claude_runner.plan.values import model_problem  # noqa: PLC0415 - one rule

        problem = model_problem(model)
        if problem is not None:
            raise UsageError(f"--model {problem}")
    pipeline = opts.get("--pipeline")
    if pipeline is not None and task:
        raise UsageError(
            "task words cannot be combined with --pipeline; put the prompts in the plan"
        )
    if pipeline is not None and verbosity != "text":
        raise UsageError("-v/-vv apply to single-prompt mode; set verbosity in the plan")
    if pipeline is None and not task and verbosity != "text":
        raise UsageError("-v/-vv need a prompt; interactive mode has no output format")
    if opts.get("--dry-run") and pipeline is None:
        raise UsageError("--dry-run needs --pipeline PLAN")
    progress, reports, graph = _pipeline_options(opts, pipeline=pipeline is not None)
    if opts.get("--rehearse") and pipeline is None and not task:
        raise UsageError(
            "--rehearse needs a prompt or --pipeline PLAN (not an interactive session)"
        )
    if task and not " ".join(task).strip():
        raise UsageError(
            "the prompt is empty: give the agent a task, or no words at all for "
            "an interactive session"
        )
    schema = opts.get("--print-schema")
    return Args(
        debug=bool(opts.get("--debug")),
        model=model if isinstance(model, str) else None,
        pipeline=(STDIN_PLAN if pipeline == "-" else Path(pipeline))
        if isinstance(pipeline, str)
        else None,
        dry_run=bool(opts.get("--dry-run")),
        print_schema=schema if isinstance(schema, str) else None,
        rehearse=bool(opts.get("--rehearse")),
        progress=progress,
        reports=reports,
        graph=graph,
        verbosity=verbosity,
        task=tuple(task),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: the only place that turns RunnerError into an exit code."""
    try:
        parsed = parse_args(sys.argv[1:] if argv is None else argv)
        if isinstance(parsed, str):
            sys.stdout.write(parsed)
            return EXIT_OK
        from claude_runner.app import run  # noqa: PLC0415 - keeps --help/--version fast

        return run(parsed)
    except RunnerError as exc:
        from claude_runner.redact import Redactor  # noqa: PLC0415

        sys.stderr.write(f"claude-runner: error: {Redactor.from_env()(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
