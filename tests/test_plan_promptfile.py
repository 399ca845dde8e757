"""read_prompt_file: the checks made when a task starts (the file may be new by then)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claude_runner.errors import PlanError
from claude_runner.plan.loader import read_prompt_file
from claude_runner.plan.promptfile import MAX_PROMPT_BYTES


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    (ws / "prompts").mkdir(parents=True)
    (ws / "prompts" / "task.md").write_text("Fix the build.\n", encoding="utf-8")
    return ws


def _error(workspace: Path, rel: str) -> str:
    with pytest.raises(PlanError) as caught:
        read_prompt_file(workspace, rel)
    [problem] = caught.value.problems
    assert problem.file == rel
    assert problem.line is None
    return problem.message


def test_reads_a_utf8_file_inside_the_workspace(workspace: Path) -> None:
    assert read_prompt_file(workspace, "prompts/task.md") == "Fix the build.\n"
    assert read_prompt_file(workspace, "./prompts/task.md") == "Fix the build.\n"


def test_file_created_after_load_is_read(workspace: Path) -> None:
    # An earlier stage may write the prompt: nothing is cached from load time.
    assert "not found" in _error(workspace, "prompts/later.md")
    (workspace / "prompts" / "later.md").write_text("Now it exists.", encoding="utf-8")
    assert read_prompt_file(workspace, "prompts/later.md") == "Now it exists."


def test_missing_file(workspace: Path) -> None:
    message = _error(workspace, "prompts/nope.md")
    assert message.startswith(f"prompt file not found in the workspace {workspace.resolve()}")


def test_directory_is_not_a_prompt(workspace: Path) -> None:
    assert _error(workspace, "prompts") == "the prompt file is not a regular file"


def test_fifo_is_refused_without_blocking(workspace: Path) -> None:
    os.mkfifo(workspace / "prompts" / "pipe")
    assert _error(workspace, "prompts/pipe") == "the prompt file is not a regular file"


def test_symlink_to_outside_the_workspace_is_refused(workspace: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read", encoding="utf-8")
    (workspace / "prompts" / "link.md").symlink_to(secret)
    message = _error(workspace, "prompts/link.md")
    assert message == f"prompt file resolves to {secret}, outside the workspace {workspace}"


def test_symlinked_directory_to_outside_is_refused(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "p.md").write_text("x", encoding="utf-8")
    (workspace / "ext").symlink_to(outside)
    assert "outside the workspace" in _error(workspace, "ext/p.md")


def test_symlink_inside_the_workspace_is_followed(workspace: Path) -> None:
    (workspace / "alias.md").symlink_to(workspace / "prompts" / "task.md")
    assert read_prompt_file(workspace, "alias.md") == "Fix the build.\n"


def test_workspace_reached_through_a_symlink(workspace: Path, tmp_path: Path) -> None:
    link = tmp_path / "ws-link"
    link.symlink_to(workspace)
    assert read_prompt_file(link, "prompts/task.md") == "Fix the build.\n"


@pytest.mark.parametrize(
    ("rel", "why"),
    [("/etc/passwd", "is absolute"), ("../x.md", "contains '..'"), ("", "is empty")],
)
def test_load_time_path_rules_hold_again(workspace: Path, rel: str, why: str) -> None:
    assert why in _error(workspace, rel)


def test_non_utf8_file(workspace: Path) -> None:
    (workspace / "latin1.md").write_bytes(b"line one\ncaf\xe9\n")
    message = _error(workspace, "latin1.md")
    assert message == ("the prompt file is not valid UTF-8 (byte 0xe9 on line 2); save it as UTF-8")


def test_blank_file(workspace: Path) -> None:
    (workspace / "blank.md").write_text(" \n\n", encoding="utf-8")
    assert _error(workspace, "blank.md") == "the prompt file is empty; write the task for the agent"


def test_size_limit(workspace: Path) -> None:
    (workspace / "huge.md").write_bytes(b"x" * (MAX_PROMPT_BYTES + 1))
    assert _error(workspace, "huge.md") == (
        f"the prompt file is larger than {MAX_PROMPT_BYTES} bytes, the limit"
    )
    (workspace / "fits.md").write_bytes(b"x" * MAX_PROMPT_BYTES)
    assert len(read_prompt_file(workspace, "fits.md")) == MAX_PROMPT_BYTES


def test_invisible_characters_alone_are_blank(workspace: Path) -> None:
    (workspace / "zwsp.md").write_text("\u200b\ufeff\u2060\n", encoding="utf-8")
    assert _error(workspace, "zwsp.md") == "the prompt file is empty; write the task for the agent"


def test_nul_character_is_refused(workspace: Path) -> None:
    (workspace / "nul.md").write_bytes(b"line one\nfix\x00it\n")
    assert _error(workspace, "nul.md") == (
        "the prompt file contains a NUL character (line 2), which no program can be given; "
        "remove it"
    )
