"""How the Claude Code CLI is invoked: pure argv/env builders and the pre-flight check.

Fixed flags are appended after the options that vary, so nothing a plan or a user
sets can displace them. The prompt comes last, after ``--``: the CLI parses its argv
with an option parser, and a prompt such as ``-v is a flag`` or ``--help`` would
otherwise be taken as an option (measured: ``claude -p --version`` prints the version).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from claude_runner.errors import AgentError

OutputFormat = Literal["text", "json", "stream-json"]
VERBOSITY_FORMATS: dict[str, OutputFormat] = {"text": "text", "v": "json", "vv": "stream-json"}
SKIP_PERMISSIONS = "--dangerously-skip-permissions"


def interactive_argv(claude_bin: str, *, model: str | None) -> list[str]:
    """The interactive session: the CLI owns the terminal."""
    argv = [claude_bin]
    if model:
        argv += ["--model", model]
    return [*argv, SKIP_PERMISSIONS]


@dataclass(frozen=True)
class CliOptions:
    """The CLI flags that vary per run (each is the pinned CLI's own flag; see
    docs/cli-behaviour.md). Unset values add nothing."""

    model: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    disallowed_tools: tuple[str, ...] | None = None
    permission_mode: str | None = None  # replaces --dangerously-skip-permissions
    append_system_prompt: str | None = None
    mcp_config: str | None = None  # a file
    add_dirs: tuple[str, ...] | None = None
    effort: str | None = None
    fallback_model: str | None = None
    settings: str | None = None  # a file or a JSON text
    max_turns: int | None = None
    max_budget_usd: float | None = None
    json_schema: str | None = None
    resume: str | None = None  # a session id to continue


def _option_args(o: CliOptions) -> list[str]:
    args: list[str] = []
    single = (
        ("--model", o.model),
        ("--append-system-prompt", o.append_system_prompt),
        ("--mcp-config", o.mcp_config),
        ("--effort", o.effort),
        ("--fallback-model", o.fallback_model),
        ("--settings", o.settings),
        ("--max-turns", None if o.max_turns is None else str(o.max_turns)),
        ("--max-budget-usd", None if o.max_budget_usd is None else f"{o.max_budget_usd:.6f}"),
        ("--json-schema", o.json_schema),
        ("--resume", o.resume),
    )
    for flag, value in single:
        if value is not None:
            args += [flag, value]
    # Variadic lists: each item its own argument (a tool rule may hold spaces); the "--"
    # before the prompt ends them.
    for flag, items in (
        ("--allowedTools", o.allowed_tools),
        ("--disallowedTools", o.disallowed_tools),
        ("--add-dir", o.add_dirs),
    ):
        if items:
            args += [flag, *items]
    return args


def build_print_argv(
    claude_bin: str,
    *,
    prompt: str | None,
    model: str | None = None,
    output_format: OutputFormat,
    verbose: bool,
    options: CliOptions | None = None,
) -> list[str]:
    """A headless run. ``prompt=None`` makes the CLI read the prompt from stdin."""
    opts = options or CliOptions(model=model)
    argv = [claude_bin, "-p", *_option_args(opts)]
    # stream-json is refused by the CLI without --verbose; json with --verbose turns into
    # an array of every message, so --verbose goes with stream-json only.
    if verbose or output_format == "stream-json":
        argv.append("--verbose")
    argv += ["--output-format", output_format]
    if opts.permission_mode is not None:
        argv += ["--permission-mode", opts.permission_mode]
    else:
        argv.append(SKIP_PERMISSIONS)
    return argv if prompt is None else [*argv, "--", prompt]


def build_agent_env(base: Mapping[str, str], *, config_dir: Path | None = None) -> dict[str, str]:
    """The CLI's environment: the runner's own, plus a private config dir when given
    (concurrent CLIs corrupt a shared ~/.claude.json)."""
    env = dict(base)
    if config_dir is not None:
        env["CLAUDE_CONFIG_DIR"] = str(config_dir)
    return env


# The CLI pinned by this checkout (scripts/setup.sh installs it): what a runner started
# from a checkout uses when no `claude` is on PATH.
CHECKOUT_CLI = Path(__file__).resolve().parents[2] / "tools/claude-code/node_modules/.bin/claude"


def resolve_claude_bin(claude_bin: str, env: Mapping[str, str], *, explicit: bool = True) -> str:
    """Find the CLI or explain how to point the runner at it. Unless CLAUDE_BIN was set
    (``explicit``), the checkout's pinned CLI is the fallback for a ``claude`` not on
    PATH."""
    found = shutil.which(claude_bin, path=env.get("PATH", os.defpath))
    if found is None and not explicit and os.access(CHECKOUT_CLI, os.X_OK):
        found = str(CHECKOUT_CLI)
    if found is None:
        raise AgentError(
            f"Claude Code CLI not found: CLAUDE_BIN={claude_bin!r} is not an executable "
            "file or a program on PATH; install @anthropic-ai/claude-code or set CLAUDE_BIN"
        )
    return found


def check_root_allowed(*, uid: int, is_sandbox: bool) -> None:
    """The CLI refuses --dangerously-skip-permissions as root unless IS_SANDBOX=1."""
    if uid == 0 and not is_sandbox:
        raise AgentError(
            "running as root (uid 0): the Claude Code CLI refuses "
            "--dangerously-skip-permissions as root. Either run the container as a "
            "non-root user (the images' default user is 'claude'), or set IS_SANDBOX=1 "
            "(exactly 1) if this container is a sandbox you accept running as root"
        )
