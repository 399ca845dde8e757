"""Benchmark: 16 ``worktree`` task workspaces of one repository, every way.

Usage: ``uv run python bench/task_workspaces.py [--rounds 5] [--scale 1.0] [--count 16]``
(needs root for the per-round file systems and the mounts; see below).

Methods, timed side by side in each round with a rotating order:

- runner: ``run_pipeline`` with one parallel stage of 16 ``worktree`` tasks whose agent
  prints an init and a result line, with ``PIPELINE_WORKSPACE_METHOD=copy``: the whole
  executor path (the stage loop hands the
  16 copies to helper threads at once, their parallel ``cp -a`` workers share one
  process-wide budget; the branch base is recorded and the work preserved, as for any
  ``worktree`` task in a git repository), its run directory on the fresh file system;
- cp_a: ``cp -a src dst`` 16 times, one after the other;
- git_worktree: ``git worktree add --detach dst`` 16 times (tracked files only, from a
  private copy of the repository so the cached one never changes);
- copy, overlay, reflink: the task workspaces module (``pipeline.workspaces``) with
  ``PIPELINE_WORKSPACE_METHOD`` forced, 16 ``Workspaces.make`` calls from 16 threads at
  once (as the executor's helper threads make them); the run's probe is not timed (once
  per run, not per workspace). copy and overlay put their run directory on the fresh
  ext4 (the overlay's lower layer is the cached repository, its upper layers go there);
  reflink needs the repository on a file system with reflinks: each round makes a fresh
  XFS image, copies the repository into it (not timed) and makes the 16 reflink copies
  there;
- overlay+snapshot: one stage snapshot (``Workspaces.stage_source``, a copy: ext4 has no
  reflinks) and then the 16 overlays over it, the price of a stage whose ``shared`` tasks
  may write the workspace while the overlays are mounted.

Disk: at scale 1.0 one method's 16 copies take about 11 GB, so five rounds of three
methods would need about 160 GB, and deleting between rounds is no way out (creating
files right after deleting many is slow for minutes on this ext4 without a journal).
Each method in each round therefore writes into its own fresh ext4 file system (no
journal, like the host's) in a sparse image file on the host disk, attached with a
direct-I/O loop device so pages are not cached twice; after the measurement it is
unmounted and the image removed, which frees one file, not 300,000 inodes. As for
``workspace_copy.py``: the source is re-read into the page cache and ``sync`` runs before
each timed method; the time ends when the last copy's process exits. ``--scale`` and
``--count`` shrink the run for a quick look; the defaults are the issue's sizes.

The last lines are medians over rounds of the per-round ratios (goals: overlay <= 0.05,
copy <= 1.00)::

    task_workspaces: runner/cp_a=X.XX runner/git_worktree=Y.YY
    task_workspaces: overlay/cp_a=X.XXXX reflink/cp_a=Y.YY copy/cp_a=Z.ZZ
    task_workspaces: overlay+snapshot/cp_a=W.WW (a stage with shared writers)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _repo
from claude_runner import proc
from claude_runner.copytree import copy_tree, remove_tree
from claude_runner.pipeline.executor import run_pipeline
from claude_runner.pipeline.workspaces import ENV_VAR, TaskWorkspace, Workspaces
from claude_runner.plan.models import Plan, resolve
from claude_runner.runtime import Runtime

AGENT = """#!/bin/sh
printf '%s\\n' '{"type":"system","subtype":"init","session_id":"bench"}'
printf '%s\\n' '{"type":"result","subtype":"success","is_error":false,"result":"ok"}'
"""


def _checked(argv: list[str], *, cwd: Path | None = None) -> str:
    done = proc.run(argv, cwd=cwd, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def fresh_fs(image: Path, size: int, mountpoint: Path, *, fstype: str = "ext4") -> Iterator[Path]:
    """A new, empty file system of ``size`` bytes mounted at ``mountpoint``: ext4 without
    a journal (like the host's), or XFS (reflinks on by default)."""
    with image.open("wb") as f:
        f.truncate(size)
    if fstype == "xfs":
        _checked(["mkfs.xfs", "-q", "-f", "-K", str(image)])
    else:
        _checked(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "nodiscard", str(image)])
    device = _checked(["losetup", "--find", "--show", "--direct-io=on", str(image)]).strip()
    try:
        mountpoint.mkdir(parents=True, exist_ok=True)
        _checked(["mount", device, str(mountpoint)])
        try:
            yield mountpoint
        finally:
            _checked(["umount", str(mountpoint)])
    finally:
        proc.run(["losetup", "--detach", device])
        image.unlink()


# A method makes ``count`` workspaces under ``mnt`` and returns their paths.
Method = Callable[[Path, int], list[Path]]


def make_run_runner(workspace: Path, agent: Path) -> Method:
    def run(mnt: Path, count: int) -> list[Path]:
        tasks = [{"id": f"t{i:02d}", "prompt": "go", "workspace": "worktree"} for i in range(count)]
        plan = {"version": "v1", "stages": [{"id": "s", "mode": "parallel", "tasks": tasks}]}
        events = io.StringIO()
        code = run_pipeline(
            resolve(Plan.model_validate(plan)),
            Runtime.from_env(
                {
                    "PATH": os.environ["PATH"],
                    "HOME": str(agent.parent),
                    "PIPELINE_WORKSPACES_ROOT": str(mnt),
                    # The executor's copy path; its overlays are the overlay line's.
                    "PIPELINE_WORKSPACE_METHOD": "copy",
                },
                claude_bin=str(agent),
            ),
            workspace=workspace,
            plan_path=Path("plan.yml"),
            out=events,
        )
        result = json.loads(events.getvalue().splitlines()[-1])
        if code != 0:
            raise RuntimeError(f"the runner failed: {result}")
        return [Path(t["workspace"]) for t in result["tasks"]]

    return run


def make_run_cp(src: Path) -> Method:
    def run(mnt: Path, count: int) -> list[Path]:
        dsts = [mnt / f"cp-{i:02d}" for i in range(count)]
        for dst in dsts:
            _checked(["cp", "-a", str(src), str(dst)])
        return dsts

    return run


def make_workspaces(src: Path, count: int, mnt: Path, method: str) -> Workspaces:
    """The run's workspaces (probed, not timed) with ``method`` forced."""
    run_dir = mnt / "run"
    run_dir.mkdir()
    env = {"PATH": os.environ["PATH"], ENV_VAR: method}
    workspaces = Workspaces.open(run_dir, src, env, modes={"worktree"})
    got = workspaces.methods.worktree
    if got != method:
        raise RuntimeError(f"asked for {method}, got {got}: {workspaces.methods.notes}")
    return workspaces


def make_all(workspaces: Workspaces, src: Path, dests: list[Path]) -> list[TaskWorkspace]:
    """``make`` for every destination, from one thread each (the executor's helpers)."""
    made: list[TaskWorkspace | BaseException] = [RuntimeError("not made")] * len(dests)

    def one(i: int) -> None:
        try:
            made[i] = workspaces.make("worktree", src, dests[i])
        except BaseException as exc:  # reported below
            made[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(dests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in made:
        if isinstance(m, BaseException):
            raise m
    return [m for m in made if isinstance(m, TaskWorkspace)]


# A timed method (mount point, count, spot check?) that also reports how long its stage
# snapshot took (0 when none).
Timed = Callable[[Path, int, bool], tuple[list[Path], float, float]]


def make_run_module(src: Path, method: str, *, snapshot: bool = False) -> Timed:
    def run(mnt: Path, count: int, check: bool) -> tuple[list[Path], float, float]:
        workspaces = make_workspaces(src, count, mnt, method)
        try:
            dests = [mnt / "run" / "tasks" / "s" / f"t{i:02d}" / "workspace" for i in range(count)]
            start = time.perf_counter()
            lower, snap = src, 0.0
            if snapshot:
                lower = workspaces.stage_source(
                    src, mnt / "run" / "snapshot", modes={"worktree"}, shared_writers=True
                ).path
                snap = time.perf_counter() - start
            made = make_all(workspaces, lower, dests)
            elapsed = time.perf_counter() - start
            if made[0].method != method:
                raise RuntimeError(f"made {made[0].method}, not {method}: {made[0].notes}")
            if check:
                _spot_check(src, [m.path for m in (made[0], made[-1])], git_only=False)
        finally:
            workspaces.close()
        return dests, elapsed, snap

    return run


def make_run_worktree(repo: Path) -> Method:
    def run(mnt: Path, count: int) -> list[Path]:
        dsts = [mnt / f"worktree-{i:02d}" for i in range(count)]
        for dst in dsts:
            _checked(["git", "-C", str(repo), "worktree", "add", "--quiet", "--detach", str(dst)])
        return dsts

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="repository size factor")
    parser.add_argument("--count", type=int, default=16, help="workspaces per method")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("task_workspaces: needs root (loop-mounted file systems per round)")

    src = _repo.ensure_repo(args.scale)
    entries, size = _repo.tree_stats(src)
    print(f"tree: {src} ({entries} entries, {size / 1e6:.0f} MB incl. .git)")
    work = _repo.bench_dir() / f"task-workspaces-{os.getpid()}"
    work.mkdir(parents=True)
    # Room for count copies plus file system overhead (inodes, directories, slack).
    fs_size = int((size * 1.3 + entries * 4096 * 1.2) * args.count) + (1 << 30)
    free = shutil.disk_usage(work).free
    if free < fs_size * 1.1:
        remove_tree(work)
        sys.exit(
            f"task_workspaces: needs {fs_size * 1.1 / 1e9:.0f} GB free under {work}, "
            f"has {free / 1e9:.0f} GB; try --scale 0.5 or --count 8"
        )
    names = ["runner", "cp_a", "git_worktree", "copy", "overlay", "overlay+snapshot", "reflink"]
    times: dict[str, list[float]] = {n: [] for n in names}
    snapshots: list[float] = []
    try:
        rounds = _Rounds(src, work, fs_size, args.count)
        # The XFS holds the repository and the reflink copies, whose blocks are shared.
        xfs_size = int(size * 1.5 + entries * 4096 * (args.count + 2)) + (1 << 30)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                if name == "reflink":
                    elapsed = _reflink_round(src, work, xfs_size, args.count, check=r == 0)
                    times[name].append(elapsed)
                else:
                    elapsed, snap = rounds.one(name, check=r == 0)
                    times[name].append(elapsed)
                    if snap:
                        snapshots.append(snap)
            line = " ".join(f"{n}={times[n][-1]:.3f}s" for n in names)
            print(f"round {r + 1}: {line} (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for mount in ("mnt", "xfs"):
            with contextlib.suppress(OSError):
                proc.run(["umount", str(work / mount)])
        remove_tree(work)
    _report(times, snapshots)


class _Rounds:
    """The methods that run in a fresh ext4 each (all but reflink)."""

    def __init__(self, src: Path, work: Path, fs_size: int, count: int) -> None:
        self.src, self.work, self.fs_size, self.count = src, work, fs_size, count
        # git worktree add and the runner's branch base write into .git: private copies.
        self.repo_copy = work / "repo"
        copy_tree(src, self.repo_copy)
        runner_repo = work / "runner-repo"
        copy_tree(src, runner_repo)
        agent = work / "agent"
        agent.write_text(AGENT)
        agent.chmod(0o755)
        self.methods: dict[str, Method] = {
            "runner": make_run_runner(runner_repo, agent),
            "cp_a": make_run_cp(src),
            "git_worktree": make_run_worktree(self.repo_copy),
        }
        self.modules: dict[str, Timed] = {
            "copy": make_run_module(src, "copy"),
            "overlay": make_run_module(src, "overlay"),
            "overlay+snapshot": make_run_module(src, "overlay", snapshot=True),
        }
        self.sources = {"runner": runner_repo, "git_worktree": self.repo_copy}

    def one(self, name: str, *, check: bool) -> tuple[float, float]:
        """(seconds, seconds of the stage snapshot or 0) of one method in a fresh ext4."""
        with fresh_fs(self.work / "fs.img", self.fs_size, self.work / "mnt") as mnt:
            _repo.warm(self.sources.get(name, self.src))
            _checked(["sync"])
            if name in self.modules:
                _, elapsed, snap = self.modules[name](mnt, self.count, check)
                return elapsed, snap
            start = time.perf_counter()
            dsts = self.methods[name](mnt, self.count)
            elapsed = time.perf_counter() - start
            if check:
                _spot_check(self.src, dsts, git_only=name == "git_worktree")
        _checked(["git", "-C", str(self.repo_copy), "worktree", "prune"])
        return elapsed, 0.0


def _report(times: dict[str, list[float]], snapshots: list[float]) -> None:
    _repo.print_medians(times)
    if snapshots:
        median = statistics.median(snapshots)
        print(f"overlay+snapshot: the stage snapshot alone took median {median:.2f}s")
    cp_a = times["cp_a"]

    def ratio(name: str) -> float:
        return _repo.paired_ratio(times[name], cp_a)

    print(
        f"task_workspaces: runner/cp_a={ratio('runner'):.2f} "
        f"runner/git_worktree={_repo.paired_ratio(times['runner'], times['git_worktree']):.2f}"
    )
    print(
        f"task_workspaces: overlay/cp_a={ratio('overlay'):.4f} "
        f"reflink/cp_a={ratio('reflink'):.3f} copy/cp_a={ratio('copy'):.2f}"
    )
    print(
        f"task_workspaces: overlay+snapshot/cp_a={ratio('overlay+snapshot'):.2f} "
        "(a stage with shared writers)"
    )


def _reflink_round(src: Path, work: Path, xfs_size: int, count: int, *, check: bool) -> float:
    """16 reflink workspaces on a fresh XFS that holds the repository (copied, untimed)."""
    with fresh_fs(work / "xfs.img", xfs_size, work / "xfs", fstype="xfs") as mnt:
        repo = mnt / "repo"
        _checked(["cp", "-a", str(src), str(repo)])
        _repo.warm(repo)
        _checked(["sync"])
        _, elapsed, _ = make_run_module(repo, "reflink")(mnt, count, check)
        return elapsed


def _spot_check(src: Path, dsts: list[Path], *, git_only: bool) -> None:
    """The first and last workspace hold the source's files, byte for byte (git keeps no
    empty directories: the generated ``empty/`` is left out of the worktree check)."""
    skip = ["--exclude=.git", *(["--exclude=empty"] if git_only else [])]
    for dst in (dsts[0], dsts[-1]):
        diff = proc.run(["diff", "-r", "--no-dereference", *skip, str(src), str(dst)], timeout=600)
        if diff.returncode != 0:
            raise RuntimeError(f"{dst} differs from {src}: {diff.stdout[:500]}")


if __name__ == "__main__":
    main()
