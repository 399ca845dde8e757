"""The run directory, task workspaces and the tasks' Claude config dirs.

Run directory ``<runs_root>/<planRunId>/`` (``planRunId`` = UTC time + 6 random hex
digits, so names sort by start time)::

    events.jsonl, result.json   the run's own files
    git/                        the runner's own git repository (preserve/)
    config/slot-<n>/            CLAUDE_CONFIG_DIRs, one per concurrency slot
    tasks/<stageId>/<taskId>/   one directory per task, fixed names inside:
        workspace/              a worktree / snapshot_ro task's workspace (workspaces/)
        workspace.upper/        an overlay's upper layer: the task's changes
        agent.log               the agent's stdout (stream-json lines), masked
        stderr.log              the agent's stderr, masked
        changes.patch           git diff --binary of a worktree task's changes
        prompt.txt              a prompt too long for argv, passed on stdin

Every name the runner chooses is fixed, and ids only ever name directories under
``tasks/``: no accepted id (``events.jsonl``, ``result.json``, ``u`` next to
``u.stderr``, ``t`` next to ``t.log``) can make two files collide. (Ids differing only
by case are refused at load, for case-insensitive file systems.)

Config dirs are per concurrency slot: a run with at most N tasks at once has N of them,
each used by one task at a time, so no two running CLIs share one while a run of 200
tasks does not create 200 (``config_dir`` in the result names a task's). How they are
seeded, and scrubbed of every credential at the end of the run: ``configdir.py``.

Nothing else is deleted by the runner; remove a whole run with
``rm -rf <runs_root>/<planRunId>`` (snapshot_ro copies need ``chmod -R u+w`` first when
not root).

A worktree task's changes are committed and written as a patch by ``preserve/``.
"""

from __future__ import annotations

import os
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path

from claude_runner.errors import WorkspaceError


def new_plan_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
    return f"{stamp}Z-{secrets.token_hex(3)}"


class TaskPaths:
    """Where one task's files go: its own directory under ``tasks/``. The two logs,
    needed by every task, are plain strings (building Paths was a visible part of the
    per-task cost)."""

    def __init__(self, run_dir: Path, stage_id: str, task_id: str) -> None:
        self.dir = f"{run_dir}/tasks/{stage_id}/{task_id}"
        self.log = f"{self.dir}/agent.log"
        self.stderr_log = f"{self.dir}/stderr.log"

    @property
    def copy(self) -> Path:
        return Path(f"{self.dir}/workspace")

    @property
    def patch(self) -> Path:
        return Path(f"{self.dir}/changes.patch")

    @property
    def index(self) -> Path:
        """A temporary git index."""
        return Path(f"{self.dir}/git-index")

    @property
    def prompt(self) -> Path:
        return Path(f"{self.dir}/prompt.txt")


def config_slot(run_dir: Path, slot: int) -> Path:
    """The CLAUDE_CONFIG_DIR of the run's ``slot``-th concurrent task."""
    return run_dir / "config" / f"slot-{slot}"


Seal = dict[str, int]  # relative path -> ctime (ns) of every entry of a sealed snapshot


def make_read_only(root: Path) -> Seal:
    """Directories 0555, files 0444 (symlinks are left alone), deepest first. Returns
    the snapshot's seal: every entry's ctime once it is read-only (see
    ``snapshot_writes``)."""
    seal: Seal = {}

    def sealed(path: str, mode: int | None) -> None:
        if mode is not None:
            os.chmod(path, mode)
        # A later chmod of the parent changes the parent's ctime only: this one is final.
        seal[os.path.relpath(path, root)] = os.lstat(path).st_ctime_ns

    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            sealed(path, None if os.path.islink(path) else 0o444)
        for name in dirnames:
            path = os.path.join(dirpath, name)
            sealed(path, None if os.path.islink(path) else 0o555)
    sealed(str(root), 0o555)
    return seal


_SNAPSHOT_REPORT = 10


def snapshot_writes(root: Path, seal: Seal) -> list[str]:
    """Paths (relative, at most ``_SNAPSHOT_REPORT``) created, removed or changed in
    ``root`` since it was sealed.

    A same-user agent can undo file modes (``chmod u+w . && echo z > f``), so modes alone
    guarantee nothing; but no process can set a ctime: every write, create, delete,
    rename, chmod or chown stamps the entry (a create, delete or rename also stamps its
    directory) with the kernel's current time. So one walk comparing each entry's ctime
    with the one recorded at sealing finds any change, whatever the agent did to the
    mtimes; a clock comparison would not do, as ctimes are stamped from a coarse clock
    or a fine one depending on the kernel."""
    found: list[str] = []
    seen = 0

    def check(path: str) -> None:
        nonlocal seen
        rel = os.path.relpath(path, root)
        try:
            ctime = os.lstat(path).st_ctime_ns
        except FileNotFoundError:
            return
        before = seal.get(rel)
        seen += before is not None
        if before != ctime and len(found) < _SNAPSHOT_REPORT:
            found.append(rel)

    check(str(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            check(os.path.join(dirpath, name))
    if seen < len(seal) and len(found) < _SNAPSHOT_REPORT:
        found.append(f"{len(seal) - seen} entries removed")
    return found


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
