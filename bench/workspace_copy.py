"""Benchmark: the runner's workspace copy vs ``cp -a`` vs Node's ``fs.cpSync``.

Usage: ``uv run python bench/workspace_copy.py [--rounds 5] [--scale 1.0]``

The tree is ``bench/_repo.py``'s generated repository (scale 1.0: ~20,000 files,
~300 MB plus a ~360 MB ``.git``). Each round times the three methods one after the
other, rotating which goes first, and every copy goes to a fresh destination: nothing is
deleted until the end (deleting many files slows file creation on this ext4 for
minutes). Before each timed copy the source is re-read into the page cache (idle cache
is handed back to the host within a minute) and ``sync`` flushes the previous copy, so
every method is measured warm with a quiet disk. Node is timed inside the Node process
(``cpSync`` alone, without Node's start-up); the other two include their process start.
The last line is the median over rounds of the per-round ratio (the same rounds' medians
of each method are printed above it)::

    workspace_copy: runner/cp_a=X.XX runner/node_cpSync=Y.YY
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _repo
from claude_runner import proc
from claude_runner.copytree import copy_tree, remove_tree

_NODE_COPY = (
    "const fs = require('fs');"
    "const t = process.hrtime.bigint();"
    "fs.cpSync(process.argv[1], process.argv[2], {recursive: true});"
    "console.log(Number(process.hrtime.bigint() - t) / 1e9);"
)


def _checked(argv: list[str]) -> str:
    done = proc.run(argv, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_runner(src: Path, dst: Path) -> float:
    return _timed(lambda: copy_tree(src, dst))


def run_cp(src: Path, dst: Path) -> float:
    return _timed(lambda: _checked(["cp", "-a", str(src), str(dst)]))


def run_node(src: Path, dst: Path) -> float:
    return float(_checked(["node", "-e", _NODE_COPY, str(src), str(dst)]).strip())


METHODS: dict[str, Callable[[Path, Path], float]] = {
    "runner": run_runner,
    "cp_a": run_cp,
    "node_cpSync": run_node,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="repository size factor")
    args = parser.parse_args()

    src = _repo.ensure_repo(args.scale)
    entries, size = _repo.tree_stats(src)
    print(f"tree: {src} ({entries} entries, {size / 1e6:.0f} MB incl. .git)")
    out = _repo.bench_dir() / f"workspace-copy-{os.getpid()}"
    out.mkdir(parents=True)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    names = list(METHODS)
    try:
        for name in names:  # untimed warm-up: the first copy of a run is often an outlier
            _repo.warm(src)
            METHODS[name](src, out / f"{name}-warmup")
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                _repo.warm(src)
                _checked(["sync"])
                times[name].append(METHODS[name](src, out / f"{name}-{r}"))
            load = os.getloadavg()[0]
            line = " ".join(f"{n}={times[n][-1]:.2f}s" for n in names)
            print(f"round {r + 1}: {line} (load {load:.1f})", flush=True)
        # One fidelity spot check: the runner's copy and cp -a's agree entry by entry.
        diff = proc.run(
            ["diff", "-r", "--no-dereference", str(out / "cp_a-0"), str(out / "runner-0")],
            timeout=600,
        )
        if diff.returncode != 0:
            raise RuntimeError(f"runner copy differs from cp -a: {diff.stdout[:500]}")
    finally:
        remove_tree(out)
    _repo.print_medians({n: times[n] for n in names})
    print(
        f"workspace_copy: runner/cp_a={_repo.paired_ratio(times['runner'], times['cp_a']):.2f} "
        f"runner/node_cpSync={_repo.paired_ratio(times['runner'], times['node_cpSync']):.2f}"
    )


if __name__ == "__main__":
    if shutil.which("node") is None:
        sys.exit("workspace_copy: node is not on PATH (needed for the fs.cpSync baseline)")
    main()
