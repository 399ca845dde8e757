"""The run directory, task workspaces, per-task Claude config dirs, and preserving work.

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
200 tasks does not create 200 (``config_dir`` in the result names a task's). Each is
seeded from the user's config (``$CLAUDE_CONFIG_DIR``, else ``~/.claude/`` and
``~/.claude.json``): settings, CLAUDE.md, agents/commands/skills, credentials and the
onboarding/account keys of the global config.

Nothing is deleted by the runner except the copied ``.credentials.json`` at the end of
each stage; remove a whole run with ``rm -rf <runs_root>/<planRunId>`` (snapshot_ro copies
need ``chmod -R u+w`` first when not root).

Preserving a worktree task's work (git workspaces only): the task copy's files are added
to a temporary index whose object database is the WORKSPACE's repository
(``GIT_DIR=<workspace>/.git GIT_WORK_TREE=<copy> GIT_INDEX_FILE=<tmp>``), written as a
tree, and committed; ``refs/heads/pipeline/<planRunId>/<stageId>/<taskId>`` points at it.
The commit's parent is the workspace as the task found it: HEAD, or, when the workspace
had uncommitted changes (untracked files, earlier stages' work), a commit of that state
on top of HEAD, made right after the copy. So the branch's last commit and the patch
(``git diff --binary <start> <end>``, applies with ``git apply`` to the workspace as it
was at task start) hold exactly what the task changed; ``changed_files`` counts them.
The workspace's checkout, index and HEAD are never touched; ignored files are not
committed (they stay in the copy). A task that changed nothing gets no branch and no
patch.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from claude_runner import proc
from claude_runner.copytree import copy_tree
from claude_runner.errors import WorkspaceError

_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Keys of the user's global config a headless run needs (onboarding, API key approval,
# account); the rest (project history, caches) stays behind.
_GLOBAL_KEYS = (
    "hasCompletedOnboarding",
    "lastOnboardingVersion",
    "customApiKeyResponses",
    "primaryApiKey",
    "oauthAccount",
    "userID",
    "bypassPermissionsModeAccepted",
    "theme",
)
_CONFIG_FILES = ("settings.json", "settings.local.json", "CLAUDE.md")
_CONFIG_DIRS = ("agents", "commands", "skills")
CREDENTIALS = ".credentials.json"


def new_plan_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
    return f"{stamp}Z-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class TaskPaths:
    """Where one task's files go inside the run directory."""

    copy: Path
    log: Path
    stderr_log: Path
    patch: Path
    prompt: Path

    @classmethod
    def of(cls, run_dir: Path, stage_id: str, task_id: str) -> TaskPaths:
        stage = run_dir / stage_id
        return cls(
            copy=stage / task_id,
            log=stage / f"{task_id}.log",
            stderr_log=stage / f"{task_id}.stderr.log",
            patch=stage / f"{task_id}.patch",
            prompt=stage / f"{task_id}.prompt.txt",
        )


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


def user_config_sources(env: Mapping[str, str]) -> tuple[Path, Path]:
    """The user's Claude config directory and global config file, as the CLI finds them."""
    configured = env.get("CLAUDE_CONFIG_DIR")
    if configured:
        base = Path(configured)
        return base, base / ".claude.json"
    home = Path(env.get("HOME") or Path.home())
    return home / ".claude", home / ".claude.json"


def seed_config_dir(dst: Path, env: Mapping[str, str]) -> None:
    """A CLAUDE_CONFIG_DIR carrying the user's settings and credentials (once: a slot's
    later tasks find it seeded)."""
    try:
        dst.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    src_dir, src_global = user_config_sources(env)
    for name in _CONFIG_FILES:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            shutil.copyfile(src_dir / name, dst / name)
    for name in _CONFIG_DIRS:
        if (src_dir / name).is_dir():
            shutil.copytree(src_dir / name, dst / name, symlinks=True)
    with contextlib.suppress(FileNotFoundError):
        creds = (src_dir / CREDENTIALS).read_bytes()
        fd = os.open(dst / CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(creds)
    seeded: dict[str, object] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        loaded = json.loads(src_global.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            seeded = {k: loaded[k] for k in _GLOBAL_KEYS if k in loaded}
    if not seeded:
        return  # the CLI creates its own (a file less per task: creation is not free here)
    seeded.setdefault("hasCompletedOnboarding", True)
    fd = os.open(dst / ".claude.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(seeded, f)


def drop_credentials(config_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (config_dir / CREDENTIALS).unlink()


# --- preserving a worktree task's changes -------------------------------------------


@dataclass(frozen=True)
class Preserved:
    branch: str | None
    patch: Path | None
    changed_files: int


def _git_env(env: Mapping[str, str], **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in env.items() if not k.startswith("GIT_")}
    clean.update(extra)
    return clean


def _git(args: list[str], *, env: Mapping[str, str], cwd: Path) -> str:
    done = proc.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env, timeout=600)
    if done.returncode != 0:
        raise WorkspaceError(f"git {args[0]} failed in {cwd}: {done.stderr.strip()[-500:]}")
    return done.stdout


def git_dir_of(workspace: Path, env: Mapping[str, str]) -> Path | None:
    """The workspace's git directory (absolute), or None when the workspace is not the
    top of a repository (a subdirectory's copy cannot be committed as the whole tree)."""
    done = proc.run(
        ["git", "-c", "safe.directory=*", "rev-parse", "--show-toplevel", "--absolute-git-dir"],
        cwd=workspace,
        env=_git_env(env),
    )
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) != 2 or Path(lines[0]) != workspace.resolve():
        return None
    return Path(lines[1])


def head_of(git_dir: Path, env: Mapping[str, str]) -> str | None:
    done = proc.run(
        ["git", "-c", "safe.directory=*", "rev-parse", "--verify", "-q", "HEAD^{commit}"],
        cwd=git_dir,
        env=_git_env(env, GIT_DIR=str(git_dir)),
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _commit_env(
    env: Mapping[str, str], git_dir: Path, copy: Path, index: Path, identity: tuple[str, str]
) -> dict[str, str]:
    return _git_env(
        env,
        GIT_DIR=str(git_dir),
        GIT_WORK_TREE=str(copy),
        GIT_INDEX_FILE=str(index),
        GIT_AUTHOR_NAME=identity[0],
        GIT_AUTHOR_EMAIL=identity[1],
        GIT_COMMITTER_NAME=identity[0],
        GIT_COMMITTER_EMAIL=identity[1],
    )


def _tree_of(commit: str | None, genv: Mapping[str, str], cwd: Path) -> str:
    return (
        _git(["rev-parse", f"{commit}^{{tree}}"], env=genv, cwd=cwd).strip()
        if commit
        else _EMPTY_TREE
    )


def snapshot_start(
    *,
    git_dir: Path,
    head: str | None,
    copy: Path,
    index: Path,
    identity: tuple[str, str],
    env: Mapping[str, str],
) -> str | None:
    """Index the fresh copy and return the commit of its state: ``head`` itself when the
    workspace had no uncommitted changes, else a commit of them on top of ``head``. The
    index stays for ``preserve_changes`` (it then re-hashes only what the task touched)."""
    genv = _commit_env(env, git_dir, copy, index, identity)
    if head is not None:
        _git(["read-tree", head], env=genv, cwd=copy)
    _git(["add", "-A", "--", "."], env=genv, cwd=copy)
    tree = _git(["write-tree"], env=genv, cwd=copy).strip()
    if tree == _tree_of(head, genv, copy):
        return head
    parents = ["-p", head] if head else []
    message = "claude-runner: uncommitted workspace state at task start"
    return _git(["commit-tree", tree, *parents, "-m", message], env=genv, cwd=copy).strip()


def preserve_changes(
    *,
    git_dir: Path,
    base: str | None,
    copy: Path,
    branch: str,
    patch: Path,
    index: Path,
    identity: tuple[str, str],
    env: Mapping[str, str],
) -> Preserved:
    """Commit the copy's changes since ``base`` (from ``snapshot_start``) on ``branch``
    and write them as a binary patch."""
    genv = _commit_env(env, git_dir, copy, index, identity)
    try:
        _git(["add", "-A", "--", "."], env=genv, cwd=copy)
        tree = _git(["write-tree"], env=genv, cwd=copy).strip()
    finally:
        with contextlib.suppress(FileNotFoundError):
            index.unlink()
    if tree == _tree_of(base, genv, copy):
        return Preserved(None, None, 0)
    parents = ["-p", base] if base else []
    commit = _git(
        ["commit-tree", tree, *parents, "-m", f"claude-runner: {branch}"], env=genv, cwd=copy
    ).strip()
    _git(["update-ref", f"refs/heads/{branch}", commit, ""], env=genv, cwd=copy)
    old = base or _EMPTY_TREE
    names = _git(["diff", "--name-only", "-z", "--no-renames", old, commit], env=genv, cwd=copy)
    with patch.open("wb") as f:  # raw bytes: a patch need not be UTF-8
        child = proc.spawn(
            ["git", "-c", "safe.directory=*", "diff", "--binary", "--no-renames", old, commit],
            cwd=copy,
            env=genv,
            stdout=f.fileno(),
        )
        if child.wait() != 0:
            raise WorkspaceError(f"git diff --binary failed in {copy} (exit {child.returncode})")
    return Preserved(branch, patch, len([n for n in names.split("\0") if n]))


def branch_name(plan_run_id: str, stage_id: str, task_id: str) -> str:
    return f"pipeline/{plan_run_id}/{stage_id}/{task_id}"


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
