"""Task workspaces (``claude_runner.pipeline.workspaces``): overlay mounts as root and in a
user namespace, reflinks on a loop-mounted XFS, the copy, forced fallbacks, read-only
mounts, the changed paths of an upper layer, and mounts left by a killed runner.

The same changes are made in every kind of workspace and must give the same files and,
for preservation, the same git tree: with an overlay the tree is built from the changed
paths alone (what the executor's preservation examines), with a copy from a full scan.
Tests that mount need root; in CI (root) none of them is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from claude_runner.copytree import copy_tree
from claude_runner.errors import UsageError, WorkspaceError
from claude_runner.pipeline.workspaces import (
    ENV_VAR,
    TaskWorkspace,
    Workspaces,
    clean_leftovers,
    has_mounts,
    mounts,
    requested_method,
)
from claude_runner.pipeline.workspaces.cleanup import Claim, current_mounts
from tests.conftest import REPO, PublicCheckout
from tests.fakeapi import FakeMessagesAPI, Text, ToolUse
from tests.procwatch import wait_gone

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by any user, unlike the runner's own

# The changes every method must carry the same way: content, deletion, renames of a file
# and of a directory, a mode change, new and retargeted symlinks, a nested directory
# replaced by a file, a file replaced by a directory, a directory replaced by a new one,
# a new deep tree, binary content, untracked and ignored files, odd names, and a file
# only opened (its metadata changes, its content does not).
SCRIPT = r"""
set -e
echo changed > tracked.txt
rm gone.txt
echo new > new.txt
mv old-name.txt new-name.txt
mv olddir renamed-dir
chmod +x script.sh
ln -s tracked.txt link-new
rm link-old && ln -s new.txt link-old
rm -rf nested && echo now-a-file > nested
rm file-to-dir && mkdir file-to-dir && echo inner > file-to-dir/inner
rm -rf wipe && mkdir wipe && echo fresh > wipe/fresh
mkdir -p brand/new/deep && echo d > brand/new/deep/f
printf '\000\001\002' > blob.bin
rm untracked-gone.txt
echo more >> untracked.txt
echo log > ignored.log
echo star >> 'star*[x].txt'
echo s >> 'sp ace.txt'
touch opened.txt
"""


def _require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the workspace mount tests need root in CI")
        pytest.skip("needs root (mounts, loop devices, other users)")


@pytest.fixture
def root() -> None:
    _require_root()


def _public_dir(prefix: str, owner: int | None = None) -> Path:
    """A directory any user can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if owner is not None:
        os.chown(path, owner, owner)
    return path


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = proc.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env={**base, **(env or {})})
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout


def _make_repo(ws: Path) -> Path:
    files = {
        "tracked.txt": "original\n",
        "gone.txt": "bye\n",
        "old-name.txt": "moving\n",
        "olddir/a": "a\n",
        "olddir/b/c": "c\n",
        "script.sh": "#!/bin/sh\necho hi\n",
        "nested/x": "x\n",
        "nested/deeper/y": "y\n",
        "file-to-dir": "file\n",
        "wipe/old1": "1\n",
        "wipe/old2": "2\n",
        "opened.txt": "same\n",
        "keepdir/k": "kept\n",
        "star*[x].txt": "glob\n",
        "sp ace.txt": "space\n",
        ".gitignore": "*.log\n",
    }
    for name, text in files.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)
    (ws / "link-old").symlink_to("tracked.txt")
    _git(ws, "init", "-q", "-b", "main")
    _git(ws, "add", "-A")
    _git(ws, "commit", "-qm", "base")
    (ws / "untracked.txt").write_text("untracked\n")
    (ws / "untracked-gone.txt").write_text("going\n")
    return ws


@pytest.fixture
def repo() -> Iterator[Path]:
    base = _public_dir("crt-ws-src-")
    try:
        yield _make_repo(base / "repo")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def runs() -> Iterator[Path]:
    path = _public_dir("crt-ws-runs-")
    try:
        yield path
    finally:
        for m in reversed(current_mounts()):  # a failed test must not leave a mount
            if m.point.is_relative_to(path):
                mounts.unmount(str(m.point), detach=True)
        proc.run(["chmod", "-R", "u+w", str(path)])
        shutil.rmtree(path, ignore_errors=True)


def _open(run_dir: Path, source: Path, method: str = "auto", **extra: str) -> Workspaces:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], ENV_VAR: method, **extra}
    return Workspaces.open(run_dir, source, env, modes={"worktree", "snapshot_ro"})


def _sh(ws: TaskWorkspace, script: str) -> proc.Completed:
    return proc.run(ws.command(["sh", "-c", script]), cwd=ws.path)


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root``: type, permission bits, content digest or link target.
    Owner-write is left out of the bits: a copy adds it everywhere by design."""
    found: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("l", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("d", stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                found[rel] = ("f", stat.S_IMODE(st.st_mode) | stat.S_IWUSR, digest)
            else:  # devices (an overlay's whiteouts), FIFOs, sockets
                found[rel] = ("o", stat.S_IFMT(st.st_mode), st.st_rdev)
    return found


def differing(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def covered(path: str, listed: list[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in listed)


class Trees:
    """Git trees of a workspace's state, as preservation builds them: from the task's
    start state (the source's files, untracked included) plus either a full scan of the
    work tree or only the listed paths. Objects go to a copy of the source's git
    directory, never to the source."""

    def __init__(self, source: Path, scratch: Path) -> None:
        self.scratch = scratch
        self.git_dir = scratch / "git"
        shutil.copytree(source / ".git", self.git_dir, symlinks=True)
        self.base_index = scratch / "base.index"
        _git(source, "read-tree", "HEAD", env=self._env(source, self.base_index))
        _git(source, "add", "-A", "--", ".", env=self._env(source, self.base_index))
        self.tracked = set(
            _git(source, "ls-files", "-z", env=self._env(source, self.base_index)).split("\0")
        )
        self._n = 0

    def _env(self, work: Path, index: Path) -> dict[str, str]:
        return {
            "GIT_DIR": str(self.git_dir),
            "GIT_WORK_TREE": str(work),
            "GIT_INDEX_FILE": str(index),
            "GIT_LITERAL_PATHSPECS": "1",
        }

    def tree(self, work: Path, paths: list[str] | None) -> str:
        self._n += 1
        index = self.scratch / f"{self._n}.index"
        shutil.copyfile(self.base_index, index)
        env = self._env(work, index)
        if paths is None:
            _git(work, "add", "-A", "--", ".", env=env)
        else:
            # `git add` refuses a pathspec that matches nothing (a deleted path git never
            # knew: an ignored or untracked file) and one that names an ignored path.
            known = [
                p
                for p in paths
                if os.path.lexists(work / p)
                or p in self.tracked
                or any(t.startswith(p + "/") for t in self.tracked)
            ]
            ignored = self._ignored(work, env, known)
            wanted = [p for p in known if p not in ignored]
            if wanted:
                _git(work, "add", "-A", "--", *wanted, env=env)
        return _git(work, "write-tree", env=env).strip()

    @staticmethod
    def _ignored(work: Path, env: dict[str, str], paths: list[str]) -> set[str]:
        done = subprocess.run(
            ["git", "-c", "safe.directory=*", "check-ignore", "-z", "--stdin"],
            input="\0".join(paths).encode() if paths else b"",
            cwd=work,
            # check-ignore refuses literal pathspecs (and reads --stdin paths as paths).
            env={
                "PATH": os.environ["PATH"],
                "GIT_CONFIG_NOSYSTEM": "1",
                **{k: v for k, v in env.items() if k != "GIT_LITERAL_PATHSPECS"},
            },
            capture_output=True,
            check=False,
        )
        assert done.returncode in (0, 1), done.stderr  # 1: nothing is ignored
        return {p for p in done.stdout.decode().split("\0") if p}


# --- the setting ---------------------------------------------------------------------------
def test_requested_method_is_checked() -> None:
    assert requested_method({}) == "auto"
    assert requested_method({ENV_VAR: ""}) == "auto"
    assert requested_method({ENV_VAR: " Overlay "}) == "overlay"
    for value in ("reflink", "copy"):
        assert requested_method({ENV_VAR: value}) == value
    with pytest.raises(UsageError, match=r"PIPELINE_WORKSPACE_METHOD='fast' is not one of auto"):
        requested_method({ENV_VAR: "fast"})


def test_a_bad_setting_fails_open_and_releases_the_run(repo: Path, runs: Path) -> None:
    with pytest.raises(UsageError):
        _open(runs / "r", repo, "fast")
    _open(runs / "r", repo, "copy").close()  # the claim was dropped


def test_a_claimed_run_directory_is_refused(repo: Path, runs: Path) -> None:
    first = _open(runs / "r", repo, "copy")
    try:
        with pytest.raises(WorkspaceError, match="in use by another runner"):
            _open(runs / "r", repo, "copy")
    finally:
        first.close()


# --- the copy --------------------------------------------------------------------------------
def test_forced_copy_gives_copies_and_a_checked_snapshot(repo: Path, runs: Path) -> None:
    w = _open(runs / "r", repo, "copy")
    try:
        assert (w.methods.worktree, w.methods.snapshot_ro, w.methods.read_only) == (
            "copy",
            "copy",
            "checked",
        )
        assert w.methods.of("worktree") == ("copy", None)
        assert w.methods.of("snapshot_ro") == ("copy", "checked")
        assert w.methods.of("shared") == ("shared", None)
        wt = w.make("worktree", repo, runs / "r" / "tasks" / "s" / "wt" / "workspace")
        ro = w.make("snapshot_ro", repo, runs / "r" / "tasks" / "s" / "ro" / "workspace")
        assert (wt.method, wt.read_only, wt.changed_paths()) == ("copy", None, None)
        assert snapshot(wt.path) == snapshot(repo)
        assert wt.command(["true"]) == ["true"]
        assert (ro.method, ro.read_only) == ("copy", "checked")
        assert stat.S_IMODE(ro.path.stat().st_mode) == 0o555
        assert stat.S_IMODE((ro.path / "tracked.txt").stat().st_mode) == 0o444
        assert _sh(wt, SCRIPT).returncode == 0
        assert snapshot(repo)["tracked.txt"] != snapshot(wt.path)["tracked.txt"]
    finally:
        w.close()
    assert not (runs / "r" / ".workspaces").exists()


def test_forced_reflink_where_there_are_none_copies_with_a_note(repo: Path, runs: Path) -> None:
    probe = proc.run(["cp", "--reflink=always", str(repo / "tracked.txt"), str(runs / "x")])
    if probe.returncode == 0:
        pytest.skip("this file system has reflinks")
    w = _open(runs / "r", repo, "reflink")
    try:
        assert (w.methods.worktree, w.methods.reflink) == ("copy", False)
        assert any(n.startswith("reflink: ") for n in w.methods.notes), w.methods.notes
    finally:
        w.close()


def test_a_cancelled_copy_fails_and_leaves_nothing(repo: Path, runs: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    w = _open(runs / "r", repo, "copy")
    dest = runs / "r" / "tasks" / "s" / "t" / "workspace"
    try:
        with pytest.raises(WorkspaceError, match="cancelled"):
            w.make("worktree", repo, dest, cancel=cancel)
        assert not dest.exists()
    finally:
        w.close()


# --- overlay as root ---------------------------------------------------------------------------
def test_overlay_as_root_matches_the_copy_and_lists_every_change(
    root: None, repo: Path, runs: Path, tmp_path: Path
) -> None:
    before = snapshot(repo)
    trees = Trees(repo, tmp_path)
    over = _open(runs / "o", repo)
    copy = _open(runs / "c", repo, "copy")
    try:
        m = over.methods
        assert (m.worktree, m.snapshot_ro, m.read_only, m.namespace) == (
            "overlay",
            "overlay",
            "kernel",
            False,
        )
        assert m.notes == ()
        a = over.make("worktree", repo, runs / "o" / "tasks" / "s" / "t" / "workspace")
        b = copy.make("worktree", repo, runs / "c" / "tasks" / "s" / "t" / "workspace")
        assert (a.method, a.read_only, a.mounted, a.namespace) == ("overlay", None, True, False)
        assert (a.read_root, a.command(["git", "status"])) == (a.path, ["git", "status"])
        assert has_mounts(runs / "o")
        assert snapshot(a.path) == before
        for ws in (a, b):
            done = _sh(ws, SCRIPT)
            assert done.returncode == 0, done.stderr
            # rename(2) of a workspace directory, no copy fallback (``git mv dir``).
            os.rename(ws.path / "keepdir", ws.path / "moved")
        after = snapshot(a.path)
        assert after == snapshot(b.path)
        changed = a.changed_paths()
        assert changed is not None
        missed = [p for p in differing(before, after) if not covered(p, changed)]
        assert missed == []
        # Exactly what the script touched: new and replacing directories whole, the
        # renamed one included (its files still come from the old name), nothing else.
        assert changed == [
            "blob.bin",
            "brand",
            "file-to-dir",
            "gone.txt",
            "ignored.log",
            "keepdir",
            "link-new",
            "link-old",
            "moved",
            "nested",
            "new-name.txt",
            "new.txt",
            "old-name.txt",
            "olddir",
            "opened.txt",
            "renamed-dir",
            "script.sh",
            "sp ace.txt",
            "star*[x].txt",
            "tracked.txt",
            "untracked-gone.txt",
            "untracked.txt",
            "wipe",
        ]
        assert trees.tree(a.path, changed) == trees.tree(b.path, None)
        assert trees.tree(a.path, changed) != trees.tree(repo, None)
        # A changed file is whole in the upper layer (no metadata-only copy), and the
        # mount is volatile (unmounting must not sync the whole file system).
        assert a.upper is not None
        assert (a.upper / "script.sh").read_text() == "#!/bin/sh\necho hi\n"
        (mount,) = [m for m in current_mounts() if m.point == a.path]
        options = set(mount.options.split(","))
        assert "redirect_dir=on" in options
        assert options & {"volatile", "fsync=volatile"}  # newer kernels show the latter
        a.release()
        a.release()  # idempotent
        assert not has_mounts(runs / "o")
        assert list(a.path.iterdir()) == []
        assert a.upper is not None
        assert (a.upper / "new.txt").read_text() == "new\n"
        assert a.changed_paths() == changed  # still readable from the upper layer
    finally:
        over.close()
        copy.close()
    assert snapshot(repo) == before  # the workspace itself was never written


def test_snapshot_ro_overlay_refuses_even_chmod(root: None, repo: Path, runs: Path) -> None:
    w = _open(runs / "r", repo)
    try:
        ro = w.make("snapshot_ro", repo, runs / "r" / "tasks" / "s" / "ro" / "workspace")
        assert (ro.method, ro.read_only, ro.changed_paths()) == ("overlay", "kernel", [])
        nobody = proc.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "sh",
                "-c",
                "chmod u+w . ; chmod u+w tracked.txt ; echo z > f ; echo z > tracked.txt",
            ],
            cwd=ro.path,
        )
        assert nobody.returncode != 0
        assert "Read-only file system" in nobody.stderr
        done = _sh(ro, "chmod u+w tracked.txt || echo z > tracked.txt")  # root, too
        assert done.returncode != 0
        assert "Read-only file system" in done.stderr
        assert not (ro.path / "f").exists()
        assert (repo / "tracked.txt").read_text() == "original\n"
        assert snapshot(ro.path) == snapshot(repo)
    finally:
        w.close()
    assert not has_mounts(runs)


def test_a_busy_workspace_is_detached_at_release(root: None, repo: Path, runs: Path) -> None:
    w = _open(runs / "r", repo)
    try:
        ws = w.make("worktree", repo, runs / "r" / "tasks" / "s" / "t" / "workspace")
        child = proc.spawn([sys.executable, "-c", "import time; time.sleep(60)"], cwd=ws.path)
        try:
            ws.release()
            assert not has_mounts(runs)
            assert ws.notes == ["the workspace was still in use at the end: detached"]
        finally:
            proc.stop(child, grace=1)
    finally:
        w.close()


def test_a_workspace_unmounted_by_the_agent_is_released_with_a_note(
    root: None, repo: Path, runs: Path
) -> None:
    w = _open(runs / "r", repo)
    try:
        ws = w.make("worktree", repo, runs / "r" / "tasks" / "s" / "t" / "workspace")
        done = proc.run(["umount", str(ws.path)])  # a root agent may, from outside it
        assert done.returncode == 0, done.stderr
        ws.release()
        assert ws.notes == ["the workspace was unmounted by something else"]
    finally:
        w.close()


def test_a_killed_runners_scratch_does_not_stop_the_next(
    root: None, repo: Path, runs: Path
) -> None:
    left = runs / "r" / ".workspaces" / "work" / "0" / "work"
    left.mkdir(parents=True)
    left.chmod(0)
    (runs / "r" / ".workspaces" / "probe" / "lower").mkdir(parents=True)
    w = _open(runs / "r", repo)
    try:
        assert w.methods.worktree == "overlay"
        ws = w.make("worktree", repo, runs / "r" / "tasks" / "s" / "t" / "workspace")
        assert (ws.method, ws.notes) == ("overlay", [])
    finally:
        w.close()


def test_close_releases_what_is_left(root: None, repo: Path, runs: Path) -> None:
    w = _open(runs / "r", repo)
    for i in range(3):
        w.make("worktree", repo, runs / "r" / "tasks" / "s" / f"t{i}" / "workspace")
    w.make("snapshot_ro", repo, runs / "r" / "tasks" / "s" / "ro" / "workspace")
    assert len([m for m in current_mounts() if m.point.is_relative_to(runs)]) == 4
    w.close()
    assert not has_mounts(runs)
    assert not (runs / "r" / ".workspaces").exists()


def test_a_stage_with_shared_writers_gets_one_snapshot(root: None, repo: Path, runs: Path) -> None:
    w = _open(runs / "r", repo)
    try:
        modes = {"worktree", "snapshot_ro"}
        same = w.stage_source(repo, runs / "r" / "snap-a", modes=modes, shared_writers=False)
        assert (same.path, same.snapshot) == (repo, False)
        assert not (runs / "r" / "snap-a").exists()
        snap = w.stage_source(repo, runs / "r" / "snap-b", modes=modes, shared_writers=True)
        assert (snap.path, snap.snapshot) == (runs / "r" / "snap-b", True)
        ws = w.make("worktree", snap.path, runs / "r" / "tasks" / "s" / "t" / "workspace")
        (repo / "tracked.txt").write_text("a shared task wrote this\n")
        assert (ws.path / "tracked.txt").read_text() == "original\n"
        copy_only = w.stage_source(
            repo, runs / "r" / "snap-c", modes={"shared"}, shared_writers=True
        )
        assert copy_only.snapshot is False
    finally:
        w.close()


def test_overlay_refused_falls_back_to_the_copy_with_a_note(
    root: None, repo: Path, runs: Path
) -> None:
    # An overlay's upper layer cannot live on an overlay (a container's root file system,
    # for one): the runs root is put on one.
    layers = runs / "layers"
    for d in ("lower", "upper", "work", "merged"):
        (layers / d).mkdir(parents=True)
    mounts.overlay(
        str(layers / "merged"), [str(layers / "lower")], str(layers / "upper"), str(layers / "work")
    )
    try:
        for method in ("auto", "overlay"):
            w = _open(layers / "merged" / method, repo, method)
            try:
                m = w.methods
                assert (m.worktree, m.snapshot_ro, m.read_only) == ("copy", "copy", "checked")
                assert any(n.startswith("overlay: refused (") for n in m.notes), m.notes
                ws = w.make("worktree", repo, layers / "merged" / method / "t" / "workspace")
                assert ws.method == "copy"
                assert snapshot(ws.path) == snapshot(repo)
            finally:
                w.close()
    finally:
        mounts.unmount(str(layers / "merged"), detach=True)


def test_a_workspace_with_mounts_inside_gets_no_overlay(root: None, repo: Path, runs: Path) -> None:
    inner = repo / "node_modules"
    inner.mkdir()
    assert proc.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)]).returncode == 0
    try:
        w = _open(runs / "r", repo)
        try:
            assert w.methods.worktree == "copy"
            assert any("mount points inside it" in n for n in w.methods.notes)
        finally:
            w.close()
    finally:
        mounts.unmount(str(inner), detach=True)


# --- reflinks on XFS ------------------------------------------------------------------------
@pytest.fixture
def xfs(root: None, tmp_path: Path) -> Iterator[Path]:
    """A fresh XFS (reflinks on by default) on a loop device."""
    if shutil.which("mkfs.xfs") is None:
        if os.environ.get("CI"):
            pytest.fail("mkfs.xfs missing: scripts/setup-dev.sh installs xfsprogs")
        pytest.skip("mkfs.xfs missing (xfsprogs)")
    image = tmp_path / "xfs.img"
    with image.open("wb") as f:
        f.truncate(600 << 20)
    assert proc.run(["mkfs.xfs", "-q", "-f", str(image)]).returncode == 0
    mnt = _public_dir("crt-xfs-")
    done = proc.run(["mount", "-o", "loop", str(image), str(mnt)])
    assert done.returncode == 0, done.stderr
    try:
        mnt.chmod(0o755)
        yield mnt
    finally:
        for m in reversed(current_mounts()):
            if m.point.is_relative_to(mnt) and m.point != mnt:
                mounts.unmount(str(m.point), detach=True)
        mounts.unmount(str(mnt), detach=True)  # the loop device goes with it (autoclear)
        mnt.rmdir()


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_reflink_on_xfs_shares_the_blocks(xfs: Path) -> None:
    repo = _make_repo(xfs / "repo")
    (repo / "big.bin").write_bytes(os.urandom(64 << 20))
    os.sync()
    w = _open(xfs / "runs" / "r", repo, "reflink")
    try:
        m = w.methods
        assert (m.worktree, m.snapshot_ro, m.read_only, m.reflink) == (
            "reflink",
            "reflink",
            "checked",
            True,
        )
        free = _free(xfs)
        ws = w.make("worktree", repo, xfs / "runs" / "r" / "tasks" / "s" / "t" / "workspace")
        ro = w.make("snapshot_ro", repo, xfs / "runs" / "r" / "tasks" / "s" / "ro" / "workspace")
        os.sync()
        assert free - _free(xfs) < (16 << 20)  # two copies of 64 MB took next to nothing
        assert (ws.method, ro.method, ro.read_only) == ("reflink", "reflink", "checked")
        assert snapshot(ws.path) == snapshot(repo)
        assert stat.S_IMODE((ro.path / "big.bin").stat().st_mode) == 0o444
        assert _sh(ws, SCRIPT).returncode == 0
        assert (repo / "tracked.txt").read_text() == "original\n"
        snap = w.stage_source(
            repo, xfs / "runs" / "r" / "snap", modes={"worktree"}, shared_writers=True
        )
        assert snap.snapshot is False  # no overlay in this run: nothing to protect
    finally:
        w.close()
    auto = _open(xfs / "runs" / "a", repo)  # root: overlays, reflinks for stage snapshots
    try:
        assert (auto.methods.worktree, auto.methods.reflink) == ("overlay", True)
        free = _free(xfs)
        snap = auto.stage_source(
            repo, xfs / "runs" / "a" / "snap", modes={"worktree"}, shared_writers=True
        )
        os.sync()
        assert snap.snapshot
        assert free - _free(xfs) < (16 << 20)
    finally:
        auto.close()


# --- an unprivileged runner ----------------------------------------------------------------------
@pytest.fixture
def user(root: None) -> Iterator[tuple[int, int]]:
    if not Path(SYSTEM_PYTHON).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SYSTEM_PYTHON} missing: scripts/setup-dev.sh installs python3")
        pytest.skip(f"{SYSTEM_PYTHON} missing")
    name = f"crtws{os.getpid()}"
    done = proc.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", name])
    assert done.returncode == 0, done.stderr
    try:
        import pwd  # noqa: PLC0415

        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        proc.run(["userdel", name])


def _drive(
    public: PublicCheckout, spec: dict[str, Any], *, wrap: list[str] | None = None
) -> dict[str, Any]:
    argv = [*(wrap or []), SYSTEM_PYTHON, "-m", "tests.workspaces_driver", json.dumps(spec)]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{public.root / 'src'}:{public.root}"}
    done = proc.run(argv, cwd=public.root, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


@dataclasses.dataclass(frozen=True)
class Unprivileged:
    """A user, and a workspace and runs root that user owns."""

    uid: int
    gid: int
    repo: Path
    runs: Path

    @property
    def ids(self) -> tuple[int, int]:
        return self.uid, self.gid

    def run_dir(self, name: str) -> Path:
        path = self.runs / name
        path.mkdir()
        os.chown(path, self.uid, self.gid)
        return path


@pytest.fixture
def unpriv(user: tuple[int, int]) -> Iterator[Unprivileged]:
    base = _public_dir("crt-ws-user-")
    try:
        repo = _make_repo(base / "repo")
        (base / "runs").mkdir()
        proc.run(["chown", "-R", f"{user[0]}:{user[1]}", str(base)])
        yield Unprivileged(user[0], user[1], repo, base / "runs")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _spec(u: Unprivileged, method: str, **extra: Any) -> dict[str, Any]:
    return {
        "uid": u.uid,
        "gid": u.gid,
        "run_dir": str(u.runs / f"run-{method}"),
        "source": str(u.repo),
        "env": {"PATH": os.environ["PATH"], ENV_VAR: method, "HOME": str(u.runs)},
        "modes": ["worktree", "snapshot_ro"],
        "tasks": [],
        **extra,
    }


def test_unprivileged_auto_uses_no_namespace(
    unpriv: Unprivileged, public_checkout: PublicCheckout
) -> None:
    unpriv.run_dir("run-auto")
    out = _drive(public_checkout, _spec(unpriv, "auto"))
    m = out["methods"]
    assert (m["worktree"], m["snapshot_ro"], m["read_only"], m["namespace"]) == (
        "copy",
        "copy",
        "checked",
        False,
    )
    assert any(n.startswith("overlay: not root") for n in m["notes"]), m["notes"]


def test_unprivileged_overlay_in_a_user_namespace(
    unpriv: Unprivileged, public_checkout: PublicCheckout, tmp_path: Path
) -> None:
    repo, runs, user = unpriv.repo, unpriv.runs, unpriv.ids
    unpriv.run_dir("run-overlay")
    dump = runs / "merged.tar"
    tasks = [
        {
            "mode": "worktree",
            "dest": str(runs / "run-overlay" / "tasks" / "s" / "wt" / "workspace"),
            "commands": [
                ["sh", "-c", "id -u; id -g; stat -c %u tracked.txt"],
                ["sh", "-c", SCRIPT],
                ["tar", "-C", ".", "-cf", str(dump), "."],
                ["git", "status", "--porcelain"],
                # The measured limit: a workspace directory cannot be renamed by rename(2).
                ["git", "mv", "keepdir", "moved"],
                ["sh", "-c", "grep -c overlay /proc/self/mountinfo"],
            ],
        },
        {
            "mode": "snapshot_ro",
            "dest": str(runs / "run-overlay" / "tasks" / "s" / "ro" / "workspace"),
            "commands": [["sh", "-c", "chmod u+w . ; echo z > f ; echo z > tracked.txt"]],
        },
    ]
    out = _drive(public_checkout, _spec(unpriv, "overlay", tasks=tasks))
    m = out["methods"]
    assert (m["worktree"], m["snapshot_ro"], m["read_only"], m["namespace"]) == (
        "overlay",
        "overlay",
        "kernel",
        True,
    )
    wt, ro = out["tasks"]
    assert (wt["method"], ro["method"], ro["read_only"]) == ("overlay", "overlay", "kernel")
    ids, script, tar, status, git_mv, mounted = wt["results"]
    assert ids["rc"] == 0
    assert ids["out"].split() == [str(user[0]), str(user[1]), str(user[0])]
    assert script["rc"] == 0, script["err"]
    assert tar["rc"] == 0, tar["err"]
    assert status["rc"] == 0, status["err"]
    assert " M tracked.txt" in status["out"].splitlines()
    assert git_mv["rc"] != 0
    assert "Invalid cross-device link" in git_mv["err"]
    assert int(mounted["out"]) >= 1  # the task sees its overlay ...
    assert not has_mounts(runs)  # ... the runner's namespace never does
    assert ro["results"][0]["rc"] != 0
    assert "Read-only file system" in ro["results"][0]["err"]
    assert not (repo / "f").exists()
    # The merged view holds what a copy holds after the same script, and the changed
    # paths give the same tree.
    merged = tmp_path / "merged"
    merged.mkdir()
    with tarfile.open(dump) as t:
        t.extractall(merged, filter="tar")
    copied = tmp_path / "copied"
    copy_tree(repo, copied)
    assert proc.run(["sh", "-c", SCRIPT], cwd=copied).returncode == 0
    assert snapshot(merged) == snapshot(copied)
    trees = Trees(repo, tmp_path)
    assert trees.tree(merged, wt["changed"]) == trees.tree(copied, None)
    missed = differing(snapshot(repo), snapshot(copied))
    assert [p for p in missed if not covered(p, wt["changed"])] == []
    # read_root: the runner, outside the namespace, reads the upper layer instead; every
    # listed path is there whole, or a whiteout where the path was deleted.
    assert (wt["namespace"], wt["read_root"]) == (True, wt["upper"])
    upper_layer = Path(wt["upper"])
    whole = snapshot(upper_layer)
    for rel in wt["changed"]:
        if rel == ".git/index":
            continue  # rewritten after the dump, by git status
        st = os.lstat(upper_layer / rel)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            assert not os.path.lexists(merged / rel), rel
        elif stat.S_ISDIR(st.st_mode):
            assert snapshot(upper_layer / rel) == snapshot(merged / rel), rel
        else:
            assert whole[rel] == snapshot(merged)[rel], rel


def test_namespace_refused_gives_the_copy_with_a_note(
    unpriv: Unprivileged, public_checkout: PublicCheckout
) -> None:
    run_dir = unpriv.run_dir("run-overlay")
    tasks = [{"mode": "worktree", "dest": str(run_dir / "t" / "workspace")}]
    spec = _spec(unpriv, "overlay", tasks=tasks, no_nested_userns=True)
    out = _drive(public_checkout, spec)
    m = out["methods"]
    assert (m["worktree"], m["snapshot_ro"], m["read_only"], m["namespace"]) == (
        "copy",
        "copy",
        "checked",
        False,
    )
    assert any(n.startswith("overlay: user namespace: refused") for n in m["notes"]), m["notes"]
    assert out["tasks"][0]["method"] == "copy"


@pytest.fixture
def sudo_rule(unpriv: Unprivileged, tmp_path: Path) -> list[str]:
    """A wrapper that runs a command in a private mount namespace where the user may run
    ``sudo -n true`` (``/etc/sudoers.d`` is replaced only there)."""
    if shutil.which("sudo") is None:
        if os.environ.get("CI"):
            pytest.fail("sudo missing: scripts/install-docker-engine.sh installs it")
        pytest.skip("sudo missing")
    import pwd  # noqa: PLC0415

    name = pwd.getpwuid(unpriv.uid).pw_name
    rules = tmp_path / "rules"
    rules.write_text(f"{name} ALL=(root) NOPASSWD: /usr/bin/true\n")
    setup = (
        "set -e\n"
        "mount -t tmpfs -o mode=0755 tmpfs /etc/sudoers.d\n"
        f"install -m 0440 {rules} /etc/sudoers.d/crt-ws-test\n"
        'exec "$@"\n'
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", setup, "sh"]


def test_a_user_with_sudo_gets_no_namespace(
    unpriv: Unprivileged, public_checkout: PublicCheckout, sudo_rule: list[str]
) -> None:
    unpriv.run_dir("run-overlay")
    out = _drive(public_checkout, _spec(unpriv, "overlay"), wrap=sudo_rule)
    m = out["methods"]
    assert (m["worktree"], m["namespace"]) == ("copy", False)
    assert any("may run sudo" in n for n in m["notes"]), m["notes"]


def test_sudo_cannot_work_inside_a_user_namespace(
    unpriv: Unprivileged, public_checkout: PublicCheckout, sudo_rule: list[str]
) -> None:
    """Why the rule above: the same user, allowed ``sudo -n true`` outside, is refused
    inside the namespace (setuid is ignored where uid 0 is not mapped)."""
    run_dir = unpriv.run_dir("run-overlay")
    tasks = [
        {
            "mode": "worktree",
            "dest": str(run_dir / "t" / "workspace"),
            "commands": [["sudo", "-n", "/usr/bin/true"]],
        }
    ]
    spec = _spec(unpriv, "overlay", tasks=tasks, ignore_blockers=True)
    out = _drive(public_checkout, spec, wrap=sudo_rule)
    assert out["methods"]["namespace"] is True
    done = out["tasks"][0]["results"][0]
    assert done["rc"] != 0
    assert "must be owned by uid 0 and have the setuid bit set" in done["err"]
    as_user = ["setpriv", f"--reuid={unpriv.uid}", f"--regid={unpriv.gid}", "--clear-groups", "--"]
    outside = proc.run([*sudo_rule, *as_user, "sudo", "-n", "/usr/bin/true"])
    assert outside.returncode == 0, outside.stderr


# --- a killed runner ------------------------------------------------------------------------
def _hold(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    child = proc.spawn(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, "the driver exited before it was ready"
    return child, dict(json.loads(line))


def test_a_sigkilled_runner_leaves_mounts_that_clean_leftovers_removes(
    root: None, repo: Path, runs: Path
) -> None:
    run_dir = runs / "run x\nwith odd name"  # mountinfo escapes both
    run_dir.mkdir()
    spec = {
        "run_dir": str(run_dir),
        "source": str(repo),
        "env": {"PATH": os.environ["PATH"]},
        "modes": ["worktree", "snapshot_ro"],
        "tasks": [
            {"mode": "worktree", "dest": str(run_dir / "tasks" / "s" / "a" / "workspace")},
            {"mode": "snapshot_ro", "dest": str(run_dir / "tasks" / "s" / "b" / "workspace")},
        ],
        "hold": True,
    }
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    argv = [sys.executable, "-m", "tests.workspaces_driver", json.dumps(spec)]
    child, _ = _hold(argv, env)
    try:
        points = {m.point for m in current_mounts() if m.point.is_relative_to(run_dir)}
        assert points == {
            run_dir / "tasks" / "s" / "a" / "workspace",
            run_dir / "tasks" / "s" / "b" / "workspace",
        }
        live = clean_leftovers(runs)
        assert (live.unmounted, live.failed) == ([], [])  # the run is claimed: left alone
        assert has_mounts(run_dir)
        child.kill()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            proc.stop(child, grace=1)
    assert has_mounts(run_dir)
    done = clean_leftovers(runs)
    assert set(done.unmounted) == points
    assert done.failed == []
    assert not has_mounts(runs)
    Claim(run_dir).release()  # nobody holds it any more


def test_clean_leftovers_leaves_mounts_that_are_not_a_runs(root: None, runs: Path) -> None:
    (runs / "r").mkdir()
    assert proc.run(["mount", "-t", "tmpfs", "tmpfs", str(runs / "r")]).returncode == 0
    try:
        assert clean_leftovers(runs).unmounted == []
        assert has_mounts(runs)
    finally:
        mounts.unmount(str(runs / "r"), detach=True)
    assert clean_leftovers(runs / "absent").unmounted == []


def test_a_sigkilled_unprivileged_runner_takes_its_namespace_along(
    unpriv: Unprivileged, public_checkout: PublicCheckout
) -> None:
    run_dir = unpriv.run_dir("run-overlay")
    tasks = [{"mode": "worktree", "dest": str(run_dir / "t" / "workspace")}]
    spec = _spec(unpriv, "overlay", tasks=tasks, hold=True)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{public_checkout.root / 'src'}:{public_checkout.root}",
    }
    argv = [SYSTEM_PYTHON, "-m", "tests.workspaces_driver", json.dumps(spec)]
    child, ready = _hold(argv, env)
    holder = ready["holder"]
    try:
        assert isinstance(holder, int)
        assert not has_mounts(unpriv.runs)  # only the namespace sees the mount
        child.kill()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            proc.stop(child, grace=1)
    assert wait_gone(holder, deadline=10), "the namespace helper outlived its runner"


# --- the real CLI in each kind of workspace -----------------------------------------------------
def _cli_argv(claude_bin: str) -> list[str]:
    return [
        claude_bin,
        "--dangerously-skip-permissions",
        "-p",
        "apply-the-script",
        "--output-format",
        "json",
    ]


@pytest.mark.cli
@pytest.mark.usefixtures("root")
def test_the_real_cli_works_in_an_overlay_like_in_a_copy(
    repo: Path,
    runs: Path,
    tmp_path: Path,
    fake_api: FakeMessagesAPI,
    claude_env: dict[str, str],
) -> None:
    fake_api.on(
        "apply-the-script",
        ToolUse("Bash", {"command": SCRIPT + "git status --porcelain | wc -l\n"}),
        Text("applied"),
    )
    trees = Trees(repo, tmp_path)
    over = _open(runs / "o", repo)
    copy = _open(runs / "c", repo, "copy")
    try:
        a = over.make("worktree", repo, runs / "o" / "t" / "workspace")
        b = copy.make("worktree", repo, runs / "c" / "t" / "workspace")
        for ws in (a, b):
            done = proc.run(
                ws.command(_cli_argv(claude_env["CLAUDE_BIN"])),
                cwd=ws.path,
                env=claude_env,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert json.loads(done.stdout)["result"] == "applied"
        # The CLI runs git status, which rewrites git's index with each file's inode.
        views = [snapshot(ws.path) for ws in (a, b)]
        for view in views:
            del view[".git/index"]
        assert views[0] == views[1]
        changed = a.changed_paths()
        assert changed is not None
        assert trees.tree(a.path, changed) == trees.tree(b.path, None)
    finally:
        over.close()
        copy.close()
    assert (runs / "o" / "t" / "workspace.upper" / "new.txt").read_text() == "new\n"


@pytest.mark.cli
def test_the_real_cli_works_in_a_user_namespace(
    unpriv: Unprivileged,
    public_checkout: PublicCheckout,
    fake_api: FakeMessagesAPI,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> None:
    repo, runs, user = unpriv.repo, unpriv.runs, unpriv.ids
    unpriv.run_dir("run-overlay")
    fake_api.on(
        "apply-the-script",
        ToolUse(
            "Bash",
            {"command": SCRIPT + "id -u; stat -c %u new.txt; git status --porcelain | wc -l\n"},
        ),
        Text("applied"),
    )
    fake_api.on(
        "try-to-write", ToolUse("Bash", {"command": "chmod u+w . ; echo z > f"}), Text("tried")
    )
    dump = runs / "merged.tar"
    env = {
        k: v
        for k, v in claude_env.items()
        if k.startswith(("ANTHROPIC_", "CLAUDE_CODE_")) or k in ("NO_PROXY", "no_proxy")
    }
    home = runs / "home"
    home.mkdir()
    os.chown(home, *user)
    env.update({"PATH": os.environ["PATH"], "HOME": str(home), ENV_VAR: "overlay"})
    cli = [
        public_checkout.claude_bin,
        "--dangerously-skip-permissions",
        "--output-format",
        "json",
        "-p",
    ]
    tasks = [
        {
            "mode": "worktree",
            "dest": str(runs / "run-overlay" / "tasks" / "s" / "wt" / "workspace"),
            "commands": [[*cli, "apply-the-script"], ["tar", "-C", ".", "-cf", str(dump), "."]],
        },
        {
            "mode": "snapshot_ro",
            "dest": str(runs / "run-overlay" / "tasks" / "s" / "ro" / "workspace"),
            "commands": [[*cli, "try-to-write"]],
        },
    ]
    spec = {**_spec(unpriv, "overlay", tasks=tasks), "env": env}
    out = _drive(public_checkout, spec)
    assert out["methods"]["namespace"] is True
    wt, ro = out["tasks"]
    assert wt["results"][0]["rc"] == 0, wt["results"][0]
    assert json.loads(wt["results"][0]["out"])["result"] == "applied"
    tool_output = json.dumps([r["messages"] for r in fake_api.requests])
    assert f"{user[0]}\\n{user[0]}" in tool_output  # uid and the owner of a new file
    assert ro["results"][0]["rc"] == 0
    assert "Read-only file system" in tool_output
    assert not (repo / "f").exists()
    merged = tmp_path / "merged"
    merged.mkdir()
    with tarfile.open(dump) as t:
        t.extractall(merged, filter="tar")
    trees = Trees(repo, tmp_path)
    copied = tmp_path / "copied"
    copy_tree(repo, copied)
    assert proc.run(["sh", "-c", SCRIPT], cwd=copied).returncode == 0
    assert trees.tree(merged, wt["changed"]) == trees.tree(copied, None)


def test_methods_fields_are_the_contract(repo: Path, runs: Path) -> None:
    w = _open(runs / "r", repo, "copy")
    try:
        assert set(dataclasses.asdict(w.methods)) == {
            "requested",
            "worktree",
            "snapshot_ro",
            "read_only",
            "namespace",
            "reflink",
            "notes",
        }
    finally:
        w.close()
