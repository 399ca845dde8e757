"""The run directory, task workspaces and the tasks' Claude config dirs.

Run directory ``<runs_root>/<planRunId>/`` (``planRunId`` = UTC time + 6 random hex
digits, so names sort by start time)::

    events.jsonl, result.json
    <stageId>/<taskId>/            worktree / snapshot_ro copy of the workspace
    <stageId>/<taskId>.log         the agent's raw stdout (stream-json lines)
    <stageId>/<taskId>.stderr.log  the agent's stderr
    <stageId>/<taskId>.patch       git diff --binary of a worktree task's changes
    .claude-config/<stageId>/slot-<n>/  CLAUDE_CONFIG_DIRs (sessions live here)

Config dirs are per concurrency slot: a stage running up to N tasks at once has N of
them, each used by one task at a time, so no two running CLIs share one while a stage of
200 tasks does not create 200 (``config_dir`` in the result names a task's). How they are
seeded and scrubbed of credentials: ``configdir.py``.

Nothing is deleted by the runner except credentials (``configdir.scrub`` at the end of
each stage); remove a whole run with ``rm -rf <runs_root>/<planRunId>`` (snapshot_ro copies
need ``chmod -R u+w`` first when not root).

A worktree task's changes are committed and written as a patch by ``preserve.py``.
"""

from __future__ import annotations

import os
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path

from claude_runner.copytree import copy_tree
from claude_runner.errors import WorkspaceError


def new_plan_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
    return f"{stamp}Z-{secrets.token_hex(3)}"


class TaskPaths:
    """Where one task's files go inside the run directory. The two logs, needed by every
    task, are plain strings (building Paths was a visible part of the per-task cost)."""

    def __init__(self, run_dir: Path, stage_id: str, task_id: str) -> None:
        self._stage = f"{run_dir}/{stage_id}"
        self._task = task_id
        self.log = f"{self._stage}/{task_id}.log"
        self.stderr_log = f"{self._stage}/{task_id}.stderr.log"

    def _path(self, suffix: str) -> Path:
        return Path(f"{self._stage}/{self._task}{suffix}")

    @property
    def copy(self) -> Path:
        return self._path("")

    @property
    def patch(self) -> Path:
        return self._path(".patch")

    @property
    def index(self) -> Path:
        """A temporary git index."""
        return self._path(".index")

    @property
    def prompt(self) -> Path:
        return self._path(".prompt.txt")


def config_slot(run_dir: Path, stage_id: str, slot: int) -> Path:
    """The CLAUDE_CONFIG_DIR of a stage's ``slot``-th concurrent task."""
    return run_dir / ".claude-config" / stage_id / f"slot-{slot}"


def copy_workspace(src: Path, dst: Path) -> None:
    """Copy ``src`` (untracked and ignored files included) to the fresh ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    copy_tree(src, dst)


def make_read_only(root: Path) -> None:
    """Directories 0555, files 0444 (symlinks are left alone), deepest first."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o444)
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o555)  # noqa: S103 - read-only on purpose
    os.chmod(root, 0o555)  # noqa: S103


def ensure_writable(path: Path) -> None:
    """Fail early with a clear message when the runs root cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot create the pipeline run directory {path}: {exc.strerror}; "
            "set PIPELINE_WORKSPACES_ROOT to a writable directory"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK) or not stat.S_ISDIR(path.stat().st_mode):
        raise WorkspaceError(
            f"the pipeline run directory {path} is not writable; "
            "set PIPELINE_WORKSPACES_ROOT to a writable directory"
        )
