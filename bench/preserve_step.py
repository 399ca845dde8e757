"""Benchmark: preserving one worktree task's work in the big repository, the runner's
hermetic method versus the unhardened one it replaced.

Usage: ``uv run python bench/preserve_step.py [--rounds 5] [--scale 1.0] [--changes 20]``

Both methods do the same two steps on a fresh copy of the same workspace (a private copy
of ``_repo``'s repository, with an untracked file and a modified tracked file so the
start state is a commit of its own): the start snapshot right after the copy, then,
after ``--changes`` files were modified, two added and one deleted, the preservation
(commit, branch, patch). Timed: those two steps only (copies and edits are not).

- hermetic: ``claude_runner.pipeline.preserve`` (runner-owned repository and index,
  every listed path checked by the runner, git never run with the workspace's
  configuration);
- baseline: the previous implementation, kept here: ``git add -A`` with a temporary
  index and the workspace's ``GIT_DIR`` (runs its hooks, filters and fsmonitor), then
  ``write-tree``, ``commit-tree``, ``update-ref`` and ``diff --binary``.

Rounds alternate the order; copies go to fresh directories and are removed only at the
end (creating files right after deleting many is slow here). The last line is the
median over rounds of the per-round ratio::

    preserve_step: hermetic/baseline=X.XX
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _repo
from claude_runner import proc
from claude_runner.copytree import copy_tree, remove_tree
from claude_runner.pipeline import preserve

IDENTITY = ("Bench", "bench@example.invalid")


# --- the baseline: the implementation this replaced ----------------------------------
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_STAT_ONLY = ["-c", "core.checkStat=minimal", "-c", "core.trustCtime=false"]
_STAT_ONLY += ["-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false"]


def _git(args: list[str], env: Mapping[str, str], cwd: Path) -> str:
    done = proc.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"git {args[0]}: {done.stderr.strip()}")
    return done.stdout


def _env(git_dir: Path, copy: Path, index: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_DIR=str(git_dir), GIT_WORK_TREE=str(copy), GIT_INDEX_FILE=str(index))
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"], env[f"GIT_{who}_EMAIL"] = IDENTITY
    return env


def _rehash_same_second(index: Path) -> None:
    st = index.stat()
    os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns - st.st_mtime_ns % 1_000_000_000))


def baseline_start(git_dir: Path, copy: Path, index: Path) -> str | None:
    env = _env(git_dir, copy, index)
    head = _git(["rev-parse", "--verify", "-q", "HEAD^{commit}"], env, copy).strip() or None
    shutil.copy2(git_dir / "index", index)
    _rehash_same_second(index)
    _git([*_STAT_ONLY, "add", "-A", "--", "."], env, copy)
    tree = _git(["write-tree"], env, copy).strip()
    head_tree = _git(["rev-parse", f"{head}^{{tree}}"], env, copy).strip() if head else _EMPTY_TREE
    if tree == head_tree:
        return head
    parents = ["-p", head] if head else []
    return _git(["commit-tree", tree, *parents, "-m", "start"], env, copy).strip()


def baseline_preserve(
    git_dir: Path, base: str | None, copy: Path, index: Path, *, branch: str, patch: Path
) -> None:
    env = _env(git_dir, copy, index)
    _rehash_same_second(index)
    _git([*_STAT_ONLY, "add", "-A", "--", "."], env, copy)
    tree = _git(["write-tree"], env, copy).strip()
    index.unlink()
    commit = _git(["commit-tree", tree, "-p", str(base), "-m", branch], env, copy).strip()
    _git(["update-ref", f"refs/heads/{branch}", commit, ""], env, copy)
    old = base or _EMPTY_TREE
    _git(["diff", "--name-only", "-z", "--no-renames", old, commit], env, copy)
    with patch.open("wb") as f:
        child = proc.spawn(
            ["git", "diff", "--binary", "--no-renames", old, commit],
            cwd=copy,
            env=env,
            stdout=f.fileno(),
        )
        if child.wait() != 0:
            raise RuntimeError("git diff --binary failed")


# --- the rounds -----------------------------------------------------------------------
def edit(copy: Path, changes: int) -> None:
    """The task's work: ``changes`` modified source files, two new files, one deleted."""
    sources = sorted((copy / "src").rglob("*.ts"))[:: max(1, 6000 // max(1, changes))]
    for path in sources[:changes]:
        path.write_bytes(path.read_bytes() + b"\n// changed by the task\n")
    (copy / "NEW.md").write_text("new\n")
    (copy / "src" / "added.ts").write_text("export const added = 1;\n")
    (copy / ".env.example").unlink()


Step = Callable[[Path, int], tuple[float, float]]


def hermetic(ws: Path, work: Path) -> Step:
    repo = preserve.open_repository(ws, work / "runner-git", env=os.environ, identity=IDENTITY)

    def run(copy: Path, n: int) -> tuple[float, float]:
        copy_tree(ws, copy)
        t0 = time.perf_counter()
        base = repo.snapshot_start(copy)
        t1 = time.perf_counter()
        edit(copy, CHANGES)
        t2 = time.perf_counter()
        repo.preserve(base, branch=f"bench/hermetic/{n}", patch=copy.with_suffix(".patch"))
        return t1 - t0, time.perf_counter() - t2

    return run


def baseline(ws: Path, work: Path) -> Step:
    def run(copy: Path, n: int) -> tuple[float, float]:
        copy_tree(ws, copy)
        index = copy.with_suffix(".index")
        t0 = time.perf_counter()
        base = baseline_start(ws / ".git", copy, index)
        t1 = time.perf_counter()
        edit(copy, CHANGES)
        t2 = time.perf_counter()
        patch = copy.with_suffix(".patch")
        baseline_preserve(ws / ".git", base, copy, index, branch=f"bench/baseline/{n}", patch=patch)
        return t1 - t0, time.perf_counter() - t2

    return run


CHANGES = 20


def main() -> None:
    global CHANGES  # noqa: PLW0603 - a module-level knob for edit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    CHANGES = args.changes
    src = _repo.ensure_repo(args.scale)
    work = _repo.bench_dir() / f"preserve-step-{os.getpid()}"
    work.mkdir(parents=True)
    try:
        ws = work / "ws"
        copy_tree(src, ws)
        # Uncommitted state at task start: a modified tracked file, an untracked one.
        (ws / "scripts" / "build.sh").write_text("#!/bin/sh\necho build changed\n")
        (ws / "notes.txt").write_text("untracked\n")
        proc.run(["git", "-C", str(ws), "status", "--porcelain"], timeout=600)  # index fresh
        methods = {"hermetic": hermetic(ws, work), "baseline": baseline(ws, work)}
        times: dict[str, list[float]] = {name: [] for name in methods}
        names = list(methods)
        for r in range(-1, args.rounds):  # round -1 warms up, untimed
            order = names if r % 2 == 0 else names[::-1]
            line = []
            for name in order:
                start, end = methods[name](work / f"{name}-{r + 1}", r + 1)
                if r >= 0:
                    times[name].append(start + end)
                line.append(f"{name}={start:.3f}+{end:.3f}s")
            if r >= 0:
                load = os.getloadavg()[0]
                print(f"round {r + 1}: {' '.join(line)} (load {load:.1f})", flush=True)
    finally:
        with contextlib.suppress(OSError):
            remove_tree(work)
    _repo.print_medians(times)
    ratio = _repo.paired_ratio(times["hermetic"], times["baseline"])
    print(f"preserve_step: hermetic/baseline={ratio:.2f}")


if __name__ == "__main__":
    main()
