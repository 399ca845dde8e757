"""Pure builders of the CLI's argv, and the pre-flight checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_runner.agent import (
    build_agent_env,
    build_print_argv,
    check_root_allowed,
    interactive_argv,
    resolve_claude_bin,
)
from claude_runner.errors import AgentError


@pytest.mark.parametrize(
    ("fmt", "verbose", "tail"),
    [
        ("text", False, ["--output-format", "text"]),
        ("json", False, ["--output-format", "json"]),
        ("stream-json", True, ["--verbose", "--output-format", "stream-json"]),
        # stream-json without --verbose is refused by the CLI, so it is always added.
        ("stream-json", False, ["--verbose", "--output-format", "stream-json"]),
    ],
)
def test_print_argv(fmt: str, verbose: bool, tail: list[str]) -> None:
    argv = build_print_argv(
        "claude",
        prompt="run tests",
        model="opus",
        output_format=fmt,  # type: ignore[arg-type]
        verbose=verbose,
    )
    assert argv == [
        "claude",
        "-p",
        "--model",
        "opus",
        *tail,
        "--dangerously-skip-permissions",
        "--",
        "run tests",
    ]


def test_print_argv_without_prompt_reads_stdin_and_without_model() -> None:
    argv = build_print_argv(
        "/bin/claude", prompt=None, model=None, output_format="text", verbose=False
    )
    assert argv == [
        "/bin/claude",
        "-p",
        "--output-format",
        "text",
        "--dangerously-skip-permissions",
    ]


def test_prompt_that_looks_like_a_flag_stays_a_prompt_and_fixed_flags_come_last() -> None:
    argv = build_print_argv(
        "claude", prompt="--output-format", model=None, output_format="json", verbose=False
    )
    # Everything after "--" is an operand for the CLI's option parser.
    assert argv[-2:] == ["--", "--output-format"]
    assert argv[-3] == "--dangerously-skip-permissions"
    assert argv[2:4] == ["--output-format", "json"]


def test_interactive_argv() -> None:
    assert interactive_argv("claude", model=None) == ["claude", "--dangerously-skip-permissions"]
    assert interactive_argv("claude", model="opus") == [
        "claude",
        "--model",
        "opus",
        "--dangerously-skip-permissions",
    ]


def test_agent_env_private_config_dir(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "HOME": "/home/x"}
    env = build_agent_env(base, config_dir=tmp_path)
    assert env == {**base, "CLAUDE_CONFIG_DIR": str(tmp_path)}
    assert build_agent_env(base) == base
    assert "CLAUDE_CONFIG_DIR" not in base


def test_missing_binary_message(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="CLAUDE_BIN='nope-claude' is not an executable"):
        resolve_claude_bin("nope-claude", {"PATH": str(tmp_path)})
    with pytest.raises(AgentError, match="not found"):
        resolve_claude_bin(str(tmp_path / "claude"), {"PATH": ""})


def test_binary_found_by_path_and_on_path(tmp_path: Path) -> None:
    exe = tmp_path / "claude"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert resolve_claude_bin("claude", {"PATH": str(tmp_path)}) == str(exe)
    assert resolve_claude_bin(str(exe), {"PATH": ""}) == str(exe)


def test_root_needs_is_sandbox() -> None:
    with pytest.raises(AgentError) as info:
        check_root_allowed(uid=0, is_sandbox=False)
    message = str(info.value)
    assert "IS_SANDBOX=1" in message
    assert "non-root user" in message
    check_root_allowed(uid=0, is_sandbox=True)
    check_root_allowed(uid=1000, is_sandbox=False)
