"""Keeping a worktree task's work: a branch in the workspace's repository and a patch.

Only when the workspace is the top of a git repository. The task copy's files are added
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
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from claude_runner import proc
from claude_runner.errors import WorkspaceError

_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# A copy has new inode numbers and ctimes: compare only size and mtime (kept by the copy),
# and use nothing tied to the workspace's own directory (fsmonitor, untracked cache).
# checkStat=minimal compares whole seconds only: see _rehash_same_second.
_STAT_ONLY = (
    "-c",
    "core.checkStat=minimal",
    "-c",
    "core.trustCtime=false",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
)


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
    if (git_dir / "index").is_file():
        # Start from the workspace's index: the copy keeps sizes and mtimes, so with
        # _STAT_ONLY only files that differ are hashed, not the whole tree.
        shutil.copy2(git_dir / "index", index)
        _rehash_same_second(index)
    elif head is not None:
        _git(["read-tree", head], env=genv, cwd=copy)
    _git([*_STAT_ONLY, "add", "-A", "--", "."], env=genv, cwd=copy)
    tree = _git(["write-tree"], env=genv, cwd=copy).strip()
    if tree == _tree_of(head, genv, copy):
        return head
    parents = ["-p", head] if head else []
    message = "claude-runner: uncommitted workspace state at task start"
    return _git(["commit-tree", tree, *parents, "-m", message], env=genv, cwd=copy).strip()


def _rehash_same_second(index: Path) -> None:
    """Make git re-hash every entry recorded in or after the second the index was written.

    With checkStat=minimal a file rewritten at the same size within the same second as
    its recorded mtime looks unchanged. git hashes again the "racy" entries, those not
    older than the index file; whether that comparison includes nanoseconds depends on
    how git was built. Moving the index file's mtime back to the start of its second
    covers the whole second either way, and only the files of that second are hashed.
    (The copy keeps the index's mtime for the same reason.)"""
    st = index.stat()
    second = st.st_mtime_ns - st.st_mtime_ns % 1_000_000_000
    os.utime(index, ns=(st.st_atime_ns, second))


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
        _rehash_same_second(index)
        _git([*_STAT_ONLY, "add", "-A", "--", "."], env=genv, cwd=copy)
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
