"""Start-up step one: make the workspace the agent runs in.

``SOURCE_WORKSPACE_DIR`` (default ``/workspace-source``) is copied faithfully into
``WORKSPACE_DIR`` (default ``/workspace``) with ``copytree.copy_tree``. The rules:

- the default source is absent: one notice, no copy, ``WORKSPACE_DIR`` is used as it is
  (created when missing), so the runner also works outside a container;
- ``SOURCE_WORKSPACE_DIR`` set explicitly but missing, or a source that is not a
  directory: ``WorkspaceError`` (exit 2);
- the two directories are the same, or one lies inside the other (after resolving
  symlinks): ``WorkspaceError``;
- ``WORKSPACE_DIR`` already holds files (a restarted container, a mounted volume): the
  two trees are never mixed and nothing is deleted. ``WORKSPACE_EXISTING`` decides:
  ``keep`` (default) uses the existing tree and skips the copy, with a notice, so a
  restart keeps the agent's work; ``fail`` stops with exit 2; ``replace`` renames the
  old tree to ``WORKSPACE_DIR.prev-<UTC time>`` and copies afresh.

A copy that was killed half-way (the runner got SIGKILL) would look like a workspace to
the next start; a marker ``.<name>.copy-incomplete`` next to ``WORKSPACE_DIR`` lives for
the length of the copy, and a start that finds it moves the partial tree aside and
copies again (an interrupted copy holds no agent work: the agent starts after it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from claude_runner.config import Settings
from claude_runner.copytree import copy_tree
from claude_runner.errors import WorkspaceError


def prepare_workspace(
    settings: Settings,
    *,
    notice: Callable[[str], None],
    cancel: threading.Event | None = None,
) -> Path:
    """Return the directory to run in, after copying the source into it if due."""
    source = settings.source_dir
    workspace = settings.workspace_dir
    if not os.path.lexists(source) and not settings.source_dir_explicit:
        notice(f"no {source}: skipping the workspace copy, working in {workspace} as it is")
        _ensure_dir(workspace)
        return workspace
    _check_source(source, explicit=settings.source_dir_explicit)
    _check_apart(source, workspace)

    marker = _marker(workspace)
    if marker.exists() and _non_empty(workspace):
        aside = _move_aside(workspace)
        notice(f"the last copy into {workspace} was interrupted: moved it to {aside}")
    elif _non_empty(workspace):
        policy = settings.workspace_existing
        if policy == "fail":
            raise WorkspaceError(
                f"WORKSPACE_DIR {workspace} is not empty, and WORKSPACE_EXISTING=fail: "
                "empty it, or set WORKSPACE_EXISTING=keep (use it as it is) or "
                "replace (move it aside and copy afresh)"
            )
        if policy == "keep":
            notice(
                f"{workspace} is not empty: keeping it and skipping the copy from {source} "
                "(WORKSPACE_EXISTING=replace moves it aside and copies afresh)"
            )
            return workspace
        aside = _move_aside(workspace)
        notice(f"moved the existing {workspace} to {aside}; copying {source} afresh")

    _copy_with_marker(source, workspace, marker, cancel)
    return workspace


def _check_source(source: Path, *, explicit: bool) -> None:
    name = "SOURCE_WORKSPACE_DIR" if explicit else "the default source directory"
    if not source.exists():
        raise WorkspaceError(
            f"{name} {source} does not exist: point SOURCE_WORKSPACE_DIR at the tree to "
            "copy, or unset it to work in WORKSPACE_DIR as it is"
        )
    if not source.is_dir():
        raise WorkspaceError(
            f"{name} {source} is not a directory: point SOURCE_WORKSPACE_DIR at the tree to copy"
        )


def _check_apart(source: Path, workspace: Path) -> None:
    src = source.resolve()
    dst = workspace.resolve()  # resolves the existing part when it does not exist yet
    if src == dst:
        raise WorkspaceError(
            f"SOURCE_WORKSPACE_DIR {source} and WORKSPACE_DIR {workspace} are the same "
            "directory: choose two separate directories"
        )
    if dst.is_relative_to(src) or src.is_relative_to(dst):
        inner, outer = (workspace, source) if dst.is_relative_to(src) else (source, workspace)
        raise WorkspaceError(
            f"{inner} lies inside {outer} (SOURCE_WORKSPACE_DIR={source}, "
            f"WORKSPACE_DIR={workspace}): choose two directories apart from each other"
        )


def _ensure_dir(path: Path) -> None:
    if path.is_dir():
        return
    if os.path.lexists(path):
        raise WorkspaceError(f"WORKSPACE_DIR {path} exists and is not a directory")
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise WorkspaceError(f"cannot create WORKSPACE_DIR {path}: {exc.strerror}") from None


def _non_empty(path: Path) -> bool:
    if not path.is_dir():
        if os.path.lexists(path):
            raise WorkspaceError(f"WORKSPACE_DIR {path} exists and is not a directory")
        return False
    try:
        with os.scandir(path) as entries:
            return any(True for _ in entries)
    except OSError as exc:
        raise WorkspaceError(f"cannot read WORKSPACE_DIR {path}: {exc.strerror}") from None


def _marker(workspace: Path) -> Path:
    absolute = Path(os.path.abspath(workspace))
    return absolute.parent / f".{absolute.name}.copy-incomplete"


def _move_aside(workspace: Path) -> Path:
    """Rename the tree to a fresh ``<name>.prev-<UTC time>[-n]`` sibling; never delete."""
    absolute = Path(os.path.abspath(workspace))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = absolute.with_name(f"{absolute.name}.prev-{stamp}")
    n = 1
    while os.path.lexists(aside):
        aside = absolute.with_name(f"{absolute.name}.prev-{stamp}-{n}")
        n += 1
    try:
        absolute.rename(aside)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot move the existing WORKSPACE_DIR {workspace} aside to {aside}: "
            f"{exc.strerror} (a mount point cannot be renamed); empty it yourself, or set "
            "WORKSPACE_EXISTING=keep to use it as it is"
        ) from None
    return aside


def _copy_with_marker(
    source: Path, workspace: Path, marker: Path, cancel: threading.Event | None
) -> None:
    # Best effort: a read-only parent directory just means no crash detection.
    made = False
    with contextlib.suppress(OSError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        made = True
    try:
        copy_tree(source, workspace, cancel=cancel)  # removes its partial tree if it fails
    finally:
        if made:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
