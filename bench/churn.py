"""Benchmark: a 16-task ``worktree`` stage run and deleted over and over, per method:
does the 20th cycle cost what the first did?

Usage: ``uv run python bench/churn.py [--cycles 20] [--count 16] [--scale 0.25]
[--methods overlay,reflink,copy]`` (root: overlays, and an XFS image for reflinks).

A cycle is what one run of a worktree stage does to the disk: open the run's workspaces
(the probe), then per task, in a thread of its own as the executor's helpers do, make
its workspace, record its start state, change a few files, preserve the work (branch
and patch), release it; then close the run and delete its directory. This disk (ext4
without a journal) makes creating files slow for minutes after many deletes (measured:
repeated ``git worktree add`` + delete of 20,000 files grew from 1.4 to 21 s): a method
that creates and deletes whole trees every cycle pays that again and again.

overlay and copy keep their runs on the host disk (under ``BENCH_DIR``); reflink on an
XFS image made once, the repository copied into it (not timed). The workspace is a
private copy of the generated repository (preservation writes branches into it).
Preservation is the hermetic one with ``changed_paths`` where this tree has it, else the
older full scan (said on the first line).

Every cycle's seconds are printed, then per method (median of the last three cycles over
the median of the first three; goal <= 1.5)::

    churn: overlay last/first=X.XX
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _preserve
import _repo
from claude_runner import proc
from claude_runner.copytree import copy_tree, remove_tree
from claude_runner.pipeline.workspaces import ENV_VAR, Workspaces

_ENDS = 3  # cycles at each end whose median is compared


def _checked(argv: list[str]) -> str:
    done = proc.run(argv, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def xfs(image: Path, size: int, mountpoint: Path) -> Iterator[Path]:
    with image.open("wb") as f:
        f.truncate(size)
    _checked(["mkfs.xfs", "-q", "-f", "-K", str(image)])
    mountpoint.mkdir(parents=True, exist_ok=True)
    _checked(["mount", "-o", "loop", str(image), str(mountpoint)])
    try:
        yield mountpoint
    finally:
        _checked(["umount", str(mountpoint)])
        image.unlink()


def _task(workspaces: Workspaces, keeper: _preserve.Keeper, src: Path, i: int) -> None:
    name = f"t{i:02d}"
    ws = workspaces.make("worktree", src, workspaces.run_dir / "tasks" / "s" / name / "workspace")
    try:
        base = keeper.start(ws, name)
        _preserve.change(ws, i)
        if keeper.keep(ws, base, name) == 0:
            raise RuntimeError(f"task {name}: nothing preserved")
    finally:
        ws.release()


def cycle(src: Path, runs: Path, method: str, count: int, n: int) -> float:
    """Seconds of one cycle (see the module docstring)."""
    run_dir = runs / f"run-{n:02d}"
    run_dir.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(runs), ENV_VAR: method}
    start = time.perf_counter()
    workspaces = Workspaces.open(run_dir, src, env, modes={"worktree"})
    keeper = _preserve.Keeper(src, run_dir, env, label=f"churn-{method}-{n:02d}")
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            _task(workspaces, keeper, src, i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        if workspaces.methods.worktree != method:
            raise RuntimeError(f"asked for {method}: {workspaces.methods.notes}")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        keeper.close()
        workspaces.close()
    if errors:
        raise errors[0]
    remove_tree(run_dir)
    return time.perf_counter() - start


def churn(src: Path, runs: Path, method: str, cycles: int, count: int) -> list[float]:
    runs.mkdir(parents=True)
    seconds = []
    for n in range(cycles):
        seconds.append(cycle(src, runs, method, count, n))
        print(f"{method} cycle {n + 1}: {seconds[-1]:.2f}s (load {os.getloadavg()[0]:.1f})")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--scale", type=float, default=0.25, help="repository size factor")
    parser.add_argument("--methods", default="overlay,reflink,copy")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("churn: needs root (overlay mounts, an XFS image for reflinks)")
    methods = args.methods.split(",")
    generated = _repo.ensure_repo(args.scale)
    entries, size = _repo.tree_stats(generated)
    how = "changed paths only" if _preserve.hermetic() else "a full scan (older preservation)"
    print(f"tree: {generated} ({entries} entries, {size / 1e6:.0f} MB); preserving: {how}")
    work = _repo.bench_dir() / f"churn-{os.getpid()}"
    work.mkdir(parents=True)
    results: dict[str, list[float]] = {}
    try:
        src = work / "repo"
        copy_tree(generated, src)
        for method in methods:
            if method == "reflink":
                image_size = int(size * 3 + entries * 4096 * (args.count + 2)) + (1 << 30)
                with xfs(work / "xfs.img", image_size, work / "xfs") as mnt:
                    repo = mnt / "repo"
                    copy_tree(src, repo)
                    results[method] = churn(repo, mnt / "runs", method, args.cycles, args.count)
            else:
                results[method] = churn(src, work / method, method, args.cycles, args.count)
    finally:
        with contextlib.suppress(OSError):
            proc.run(["umount", str(work / "xfs")])
        remove_tree(work)
    for method, seconds in results.items():
        first = statistics.median(seconds[:_ENDS])
        last = statistics.median(seconds[-_ENDS:])
        print(f"{method}: first {first:.2f}s, last {last:.2f}s (medians of {_ENDS} cycles)")
    for method, seconds in results.items():
        ratio = statistics.median(seconds[-_ENDS:]) / statistics.median(seconds[:_ENDS])
        print(f"churn: {method} last/first={ratio:.2f}")


if __name__ == "__main__":
    main()
