"""prepare_workspace: the start-up rules for SOURCE_WORKSPACE_DIR and WORKSPACE_DIR."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from claude_runner.config import ENV_VARS, Settings
from claude_runner.errors import UsageError, WorkspaceError
from claude_runner.workspace import prepare_workspace


def settings(tmp_path: Path, **env: str) -> Settings:
    base = {
        "SOURCE_WORKSPACE_DIR": str(tmp_path / "source"),
        "WORKSPACE_DIR": str(tmp_path / "workspace"),
    }
    merged = {k: v for k, v in {**base, **env}.items() if v != "<unset>"}
    return Settings.from_env(merged)


def make_source(tmp_path: Path) -> Path:
    src = tmp_path / "source"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "main.py").write_text("print('hi')\n")
    (src / ".env").write_text("A=1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    os.symlink("pkg/main.py", src / "main-link")
    return src


def tree(root: Path) -> dict[str, str]:
    """Relative path -> content (files), link target (symlinks) or '' (directories)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = ""
        else:
            out[rel] = path.read_text()
    return out


class Notices:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def test_source_is_copied_into_the_workspace(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    notices = Notices()
    workspace = prepare_workspace(settings(tmp_path), notice=notices)
    assert workspace == tmp_path / "workspace"
    assert tree(workspace) == tree(src)
    assert os.access(workspace / "run.sh", os.X_OK)
    assert notices.lines == []
    assert not list(tmp_path.glob(".workspace.copy-incomplete"))


def test_missing_default_source_skips_the_copy_with_one_notice(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-source"
    s = settings(tmp_path, SOURCE_WORKSPACE_DIR="<unset>")
    # The default (/workspace-source) is not ours to create or remove: keep what from_env
    # decided (not explicit) and point the default at a path that surely does not exist.
    s = replace(s, source_dir=missing)
    assert not s.source_dir_explicit
    notices = Notices()
    workspace = prepare_workspace(s, notice=notices)
    assert workspace == tmp_path / "workspace"
    assert workspace.is_dir()  # created
    assert tree(workspace) == {}
    assert len(notices.lines) == 1
    assert str(missing) in notices.lines[0]
    assert "\n" not in notices.lines[0]


def test_missing_default_source_keeps_an_existing_workspace(tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "work.txt").write_text("mine")
    s = replace(settings(tmp_path), source_dir_explicit=False)
    workspace = prepare_workspace(s, notice=Notices())
    assert tree(workspace) == {"work.txt": "mine"}


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_explicit_source_that_is_missing_or_not_a_directory_is_exit_2(
    tmp_path: Path, kind: str
) -> None:
    if kind == "file":
        (tmp_path / "source").write_text("not a directory")
    with pytest.raises(WorkspaceError) as info:
        prepare_workspace(settings(tmp_path), notice=Notices())
    message = str(info.value)
    assert "SOURCE_WORKSPACE_DIR" in message
    assert str(tmp_path / "source") in message
    assert ("does not exist" if kind == "missing" else "is not a directory") in message
    assert info.value.exit_code == 2
    assert not (tmp_path / "workspace").exists()


def test_default_source_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "source").write_text("a file")
    s = replace(settings(tmp_path), source_dir_explicit=False)
    with pytest.raises(WorkspaceError, match="is not a directory"):
        prepare_workspace(s, notice=Notices())


@pytest.mark.parametrize(
    ("source", "workspace", "message"),
    [
        ("source", "source", "are the same directory"),
        ("source", "source/inner", "lies inside"),
        ("source/inner", "source", "lies inside"),
        ("source", "alias", "are the same directory"),  # alias -> source
        ("source", "alias/deeper", "lies inside"),
    ],
)
def test_nested_or_equal_directories_are_exit_2(
    tmp_path: Path, source: str, workspace: str, message: str
) -> None:
    make_source(tmp_path)
    (tmp_path / "source" / "inner").mkdir()
    os.symlink(tmp_path / "source", tmp_path / "alias")
    before = tree(tmp_path / "source")
    s = settings(
        tmp_path,
        SOURCE_WORKSPACE_DIR=str(tmp_path / source),
        WORKSPACE_DIR=str(tmp_path / workspace),
    )
    with pytest.raises(WorkspaceError, match=message) as info:
        prepare_workspace(s, notice=Notices())
    assert "SOURCE_WORKSPACE_DIR" in str(info.value)
    assert "WORKSPACE_DIR" in str(info.value)
    assert info.value.exit_code == 2
    assert tree(tmp_path / "source") == before


def existing_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    (ws / "notes").mkdir(parents=True)
    (ws / "notes" / "agent-work.md").write_text("work from the last run\n")
    (ws / "pkg").mkdir()
    (ws / "pkg" / "main.py").write_text("edited by the agent\n")
    return ws


def test_non_empty_workspace_is_kept_by_default_and_never_mixed(tmp_path: Path) -> None:
    make_source(tmp_path)
    ws = existing_workspace(tmp_path)
    before = tree(ws)
    notices = Notices()
    assert prepare_workspace(settings(tmp_path), notice=notices) == ws
    assert tree(ws) == before  # no file of the source slipped in, nothing lost
    assert len(notices.lines) == 1
    assert "keeping it" in notices.lines[0]
    assert "WORKSPACE_EXISTING=replace" in notices.lines[0]


def test_non_empty_workspace_with_fail_is_exit_2(tmp_path: Path) -> None:
    make_source(tmp_path)
    ws = existing_workspace(tmp_path)
    before = tree(ws)
    with pytest.raises(WorkspaceError, match="WORKSPACE_EXISTING=fail") as info:
        prepare_workspace(settings(tmp_path, WORKSPACE_EXISTING="fail"), notice=Notices())
    assert str(ws) in str(info.value)
    assert tree(ws) == before


def test_non_empty_workspace_with_replace_is_moved_aside_then_copied(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    ws = existing_workspace(tmp_path)
    before = tree(ws)
    notices = Notices()
    s = settings(tmp_path, WORKSPACE_EXISTING="replace")
    assert prepare_workspace(s, notice=notices) == ws
    assert tree(ws) == tree(src)
    (aside,) = tmp_path.glob("workspace.prev-*")
    assert tree(aside) == before
    assert str(aside) in notices.lines[0]
    # Twice within the same second: a second, distinct name; still nothing deleted.
    (ws / "more-work").write_text("x")
    prepare_workspace(s, notice=Notices())
    asides = sorted(tmp_path.glob("workspace.prev-*"))
    assert len(asides) == 2
    assert {"more-work"} <= set().union(*(tree(a) for a in asides))


def test_an_empty_existing_workspace_is_filled(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    (tmp_path / "workspace").mkdir()
    notices = Notices()
    prepare_workspace(settings(tmp_path, WORKSPACE_EXISTING="fail"), notice=notices)
    assert tree(tmp_path / "workspace") == tree(src)
    assert notices.lines == []


def test_interrupted_copy_is_moved_aside_and_redone(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    ws = tmp_path / "workspace"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "main.py").write_text("print('h")  # a copy killed half-way
    (tmp_path / ".workspace.copy-incomplete").touch()
    notices = Notices()
    prepare_workspace(settings(tmp_path), notice=notices)
    assert tree(ws) == tree(src)
    assert "interrupted" in notices.lines[0]
    (aside,) = tmp_path.glob("workspace.prev-*")
    assert (aside / "pkg" / "main.py").read_text() == "print('h"
    assert not (tmp_path / ".workspace.copy-incomplete").exists()


def test_failed_copy_leaves_no_partial_workspace_or_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_source(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    with pytest.raises(WorkspaceError, match="cannot start cp"):
        prepare_workspace(settings(tmp_path), notice=Notices())
    assert not (tmp_path / "workspace").exists()
    assert not (tmp_path / ".workspace.copy-incomplete").exists()
    # The next start copies normally.
    monkeypatch.undo()
    prepare_workspace(settings(tmp_path), notice=Notices())
    assert tree(tmp_path / "workspace") == tree(tmp_path / "source")


def test_workspace_that_is_a_file_is_exit_2(tmp_path: Path) -> None:
    make_source(tmp_path)
    (tmp_path / "workspace").write_text("a file")
    with pytest.raises(WorkspaceError, match="is not a directory"):
        prepare_workspace(settings(tmp_path), notice=Notices())


def test_workspace_existing_setting() -> None:
    assert Settings.from_env({}).workspace_existing == "keep"
    assert Settings.from_env({"WORKSPACE_EXISTING": "Replace"}).workspace_existing == "replace"
    with pytest.raises(UsageError, match=r"WORKSPACE_EXISTING='merge'.*keep, fail, replace"):
        Settings.from_env({"WORKSPACE_EXISTING": "merge"})
    assert "WORKSPACE_EXISTING" in {name for name, _, _ in ENV_VARS}
