"""Benchmark: preserving 16 ``worktree`` tasks' work, overlay against copy.

Usage: ``uv run python bench/workspace_preserve.py [--rounds 5] [--scale 1.0]
[--count 16]`` (root: overlays, and a fresh ext4 per round as in
``task_workspaces.py``).

Each round makes the 16 workspaces both ways (the copy method: full copies; overlay:
mounts over the repository), records each task's start state, makes the same few
changes in each (``_preserve.change``) and then times only the preservation of the 16
(branch and patch, from 16 threads at once as the executor's helpers do): with an
overlay the hermetic preservation examines only the paths the upper layer lists
(``changed_paths``), with a copy it scans the whole tree. Needs that preservation
(``Repository.preserve(..., changed_paths=...)``); on a tree without it the benchmark
says so and stops.

The last line is the median over rounds of the per-round ratio (goal <= 0.5)::

    preserve: overlay/copy=X.XX
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _preserve
import _repo
from claude_runner.copytree import copy_tree, remove_tree
from claude_runner.pipeline.workspaces import ENV_VAR, TaskWorkspace, Workspaces
from task_workspaces import fresh_fs, make_all


def one_round(src: Path, mnt: Path, method: str, count: int, r: int) -> float:
    """Seconds to preserve ``count`` tasks' changes made in ``method`` workspaces."""
    run_dir = mnt / "run"
    run_dir.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(mnt), ENV_VAR: method}
    workspaces = Workspaces.open(run_dir, src, env, modes={"worktree"})
    keeper = _preserve.Keeper(src, run_dir, env, label=f"preserve-{method}-{r}")
    try:
        dests = [run_dir / "tasks" / "s" / f"t{i:02d}" / "workspace" for i in range(count)]
        made = make_all(workspaces, src, dests)
        if made[0].method != method:
            raise RuntimeError(f"asked for {method}, made {made[0].method}: {made[0].notes}")
        bases = [keeper.start(ws, f"t{i:02d}") for i, ws in enumerate(made)]
        for i, ws in enumerate(made):
            _preserve.change(ws, i)
        _repo.warm(src)
        start = time.perf_counter()
        counts = _keep_all(keeper, made, bases)
        elapsed = time.perf_counter() - start
        if min(counts) == 0:
            raise RuntimeError(f"{method}: a task's changes were not preserved: {counts}")
    finally:
        keeper.close()
        workspaces.close()
    return elapsed


def _keep_all(
    keeper: _preserve.Keeper, made: list[TaskWorkspace], bases: list[object]
) -> list[int]:
    counts = [0] * len(made)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            counts[i] = keeper.keep(made[i], bases[i], f"t{i:02d}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(made))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="repository size factor")
    parser.add_argument("--count", type=int, default=16)
    args = parser.parse_args()
    if not _preserve.hermetic():
        print(
            "preserve: not measured: this tree's preservation has no changed_paths "
            "(Repository.preserve(..., changed_paths=...)); run it once that is merged"
        )
        return
    if os.geteuid() != 0:
        sys.exit("workspace_preserve: needs root (overlay mounts, per-round file systems)")
    generated = _repo.ensure_repo(args.scale)
    entries, size = _repo.tree_stats(generated)
    print(f"tree: {generated} ({entries} entries, {size / 1e6:.0f} MB incl. .git)")
    work = _repo.bench_dir() / f"workspace-preserve-{os.getpid()}"
    work.mkdir(parents=True)
    fs_size = int((size * 1.3 + entries * 4096 * 1.2) * args.count) + (1 << 30)
    if shutil.disk_usage(work).free < fs_size * 1.1:
        remove_tree(work)
        sys.exit(f"workspace_preserve: needs {fs_size * 1.1 / 1e9:.0f} GB free under {work}")
    times: dict[str, list[float]] = {"overlay": [], "copy": []}
    names = list(times)
    try:
        src = work / "repo"  # preservation writes branches into the workspace's repository
        copy_tree(generated, src)
        for r in range(args.rounds):
            for name in names[r % 2 :] + names[: r % 2]:
                with fresh_fs(work / "fs.img", fs_size, work / "mnt") as mnt:
                    times[name].append(one_round(src, mnt, name, args.count, r))
            line = " ".join(f"{n}={times[n][-1]:.3f}s" for n in names)
            print(f"round {r + 1}: {line} (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        remove_tree(work)
    _repo.print_medians(times)
    print(f"preserve: overlay/copy={_repo.paired_ratio(times['overlay'], times['copy']):.2f}")


if __name__ == "__main__":
    main()
