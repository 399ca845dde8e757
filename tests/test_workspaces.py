"""Task workspaces (``claude_runner.pipeline.workspaces``) with a root runner: overlay
mounts, reflinks on a loop-mounted XFS, the copy, forced fallbacks, read-only mounts, the
changed paths of an upper layer, and mounts left by a killed runner. The unprivileged
runner (a user namespace) is in ``test_workspaces_unprivileged.py``.

The same changes are made in every kind of workspace and must give the same files and,
for preservation, the same git tree: with an overlay the tree is built from the changed
paths alone (what the executor's preservation examines), with a copy from a full scan.
Tests that mount need root; in CI (root) none of them is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_runner import proc
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
from tests.conftest import REPO
from tests.fakeapi import FakeMessagesAPI, Text, ToolUse
from tests.workspaces_helpers import (
    SCRIPT,
    Trees,
    covered,
    differing,
    hold_driver,
    make_repo,
    public_dir,
    require_root,
    snapshot,
)


@pytest.fixture
def root() -> None:
    require_root()


@pytest.fixture
def repo() -> Iterator[Path]:
    base = public_dir("crt-ws-src-")
    try:
        yield make_repo(base / "repo")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def runs() -> Iterator[Path]:
    path = public_dir("crt-ws-runs-")
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


@pytest.mark.root
# --- overlay as root ---------------------------------------------------------------------------
@pytest.mark.root
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


@pytest.mark.root
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


@pytest.mark.root
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


@pytest.mark.root
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


@pytest.mark.root
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


@pytest.mark.root
def test_a_workspace_is_never_mounted_over_files(root: None, repo: Path, runs: Path) -> None:
    dest = runs / "r" / "tasks" / "s" / "t" / "workspace"
    dest.mkdir(parents=True)
    (dest / "left").write_text("from an earlier attempt\n")
    with _open(runs / "r", repo) as w, pytest.raises(WorkspaceError, match="not empty"):
        w.make("worktree", repo, dest)
    assert (dest / "left").read_text() == "from an earlier attempt\n"
    assert not has_mounts(runs)


@pytest.mark.root
def test_close_releases_what_is_left(root: None, repo: Path, runs: Path) -> None:
    w = _open(runs / "r", repo)
    for i in range(3):
        w.make("worktree", repo, runs / "r" / "tasks" / "s" / f"t{i}" / "workspace")
    w.make("snapshot_ro", repo, runs / "r" / "tasks" / "s" / "ro" / "workspace")
    assert len([m for m in current_mounts() if m.point.is_relative_to(runs)]) == 4
    w.close()
    assert not has_mounts(runs)
    assert not (runs / "r" / ".workspaces").exists()


@pytest.mark.root
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


@pytest.mark.root
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


@pytest.mark.root
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
    mnt = public_dir("crt-xfs-")
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


@pytest.mark.root
def test_reflink_on_xfs_shares_the_blocks(xfs: Path) -> None:
    repo = make_repo(xfs / "repo")
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


@pytest.mark.root
# --- a killed runner ------------------------------------------------------------------------
@pytest.mark.root
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
    child, _ = hold_driver(argv, env)
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


@pytest.mark.root
def test_clean_leftovers_leaves_mounts_that_are_not_a_runs(root: None, runs: Path) -> None:
    (runs / "r").mkdir()
    assert proc.run(["mount", "-t", "tmpfs", "tmpfs", str(runs / "r")]).returncode == 0
    try:
        assert clean_leftovers(runs).unmounted == []
        assert has_mounts(runs)
    finally:
        mounts.unmount(str(runs / "r"), detach=True)
    assert clean_leftovers(runs / "absent").unmounted == []


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


@pytest.mark.root
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
