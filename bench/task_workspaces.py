"""Benchmark: 16 ``worktree`` task workspaces of one repository, three ways.

Usage: ``uv run python bench/task_workspaces.py [--rounds 5] [--scale 1.0] [--count 16]``
(needs root for the per-round file systems; see below).

Methods, timed side by side in each round with a rotating order:

- runner: ``run_pipeline`` with one parallel stage of 16 ``worktree`` tasks whose agent
  prints an init and a result line: the whole executor path (the stage loop hands the
  16 copies to helper threads at once, their parallel ``cp -a`` workers share one
  process-wide budget; the branch base is recorded and the work preserved, as for any
  ``worktree`` task in a git repository), its run directory on the fresh file system;
- cp_a: ``cp -a src dst`` 16 times, one after the other;
- git_worktree: ``git worktree add --detach dst`` 16 times (tracked files only, from a
  private copy of the repository so the cached one never changes).

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

The last line is the median over rounds of the per-round ratio::

    task_workspaces: runner/cp_a=X.XX runner/git_worktree=Y.YY
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _repo
from claude_runner import proc
from claude_runner.copytree import copy_tree, remove_tree
from claude_runner.pipeline.executor import run_pipeline
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
def fresh_fs(image: Path, size: int, mountpoint: Path) -> Iterator[Path]:
    """A new, empty ext4 (no journal) of ``size`` bytes mounted at ``mountpoint``."""
    with image.open("wb") as f:
        f.truncate(size)
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
    times: dict[str, list[float]] = {"runner": [], "cp_a": [], "git_worktree": []}
    names = list(times)
    try:
        # git worktree add and the runner's branch base write into .git: private copies.
        repo_copy = work / "repo"
        copy_tree(src, repo_copy)
        runner_repo = work / "runner-repo"
        copy_tree(src, runner_repo)
        agent = work / "agent"
        agent.write_text(AGENT)
        agent.chmod(0o755)
        methods: dict[str, Method] = {
            "runner": make_run_runner(runner_repo, agent),
            "cp_a": make_run_cp(src),
            "git_worktree": make_run_worktree(repo_copy),
        }
        sources = {"runner": runner_repo, "cp_a": src, "git_worktree": repo_copy}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                with fresh_fs(work / "fs.img", fs_size, work / "mnt") as mnt:
                    _repo.warm(sources[name])
                    _checked(["sync"])
                    start = time.perf_counter()
                    dsts = methods[name](mnt, args.count)
                    times[name].append(time.perf_counter() - start)
                    if r == 0:
                        _spot_check(src, dsts, git_only=name == "git_worktree")
                _checked(["git", "-C", str(repo_copy), "worktree", "prune"])
            line = " ".join(f"{n}={times[n][-1]:.2f}s" for n in names)
            print(f"round {r + 1}: {line} (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        with contextlib.suppress(OSError):
            proc.run(["umount", str(work / "mnt")])
        remove_tree(work)
    _repo.print_medians({n: times[n] for n in names})
    print(
        f"task_workspaces: runner/cp_a={_repo.paired_ratio(times['runner'], times['cp_a']):.2f} "
        f"runner/git_worktree={_repo.paired_ratio(times['runner'], times['git_worktree']):.2f}"
    )


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
