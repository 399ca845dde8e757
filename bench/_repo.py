"""A deterministic repository for the copy benchmarks, generated once and cached.

At scale 1.0 (the issue's size): about 20,000 files and 300 MB in the working tree — a
source tree, a deep ``node_modules``-like dependency tree with ``.bin`` symlinks and
executable scripts, a few large binary files — plus a ``.git`` with five commits of
history (about 350 MB, packed). Everything is tracked, so a ``git worktree`` of it has
the same files as a full copy.

The cache lives in ``$BENCH_DIR`` (default ``<repo root>/.bench``, ignored by git) as
``repo-s<scale>``; a ``.done`` marker next to it says the generation finished, so an
interrupted run is regenerated rather than reused half-made.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from claude_runner import proc  # noqa: E402

SEED = 20261126
_VOCABULARY = (
    "const let return import export from function class async await yield if else for "
    "while switch case break default new this super try catch finally throw typeof "
    "value index result buffer stream handler request response config options module "
    "state error data node path file read write open close parse render update"
)
_WORDS = _VOCABULARY.split()
_FIXED_DATE = "2026-01-01T00:00:00+0000"


def bench_dir() -> Path:
    """Where generated repositories and benchmark destinations go."""
    return Path(os.environ.get("BENCH_DIR") or ROOT / ".bench").resolve()


def _text(rng: random.Random, size: int) -> bytes:
    out: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(3, 12))) + ";\n"
        out.append(line)
        length += len(line)
    return "".join(out).encode()[:size]


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def _git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "GIT_AUTHOR_DATE": _FIXED_DATE,
        "GIT_COMMITTER_DATE": _FIXED_DATE,
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    # No auto-gc in the background; no delta search on the large random blobs.
    tuning = ["-c", "gc.auto=0", "-c", "core.bigFileThreshold=4m"]
    done = proc.run(["git", *tuning, "-C", str(repo), *args], env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")


def _populate(repo: Path, rng: random.Random, scale: float) -> None:
    n_src = int(6000 * scale)
    n_pkgs = max(4, int(600 * scale))
    n_big = max(1, round(5 * scale)) if scale >= 0.2 else 1
    big_size = int(36 * 1024 * 1024 * min(scale, 1.0)) if scale < 1 else 36 * 1024 * 1024

    # A source tree: packages nested three levels deep, text files of 1-24 KB.
    for i in range(n_src):
        d = repo / "src" / f"pkg{i % 40:02d}" / f"mod{i % 7}" / f"sub{i % 3}"
        _write(d / f"file{i:05d}.ts", _text(rng, rng.randint(1024, 24 * 1024)))
    # A deep dependency tree: each package nests its own node_modules a few levels down.
    for p in range(n_pkgs):
        depth = p % 5
        base = repo / "node_modules"
        for level in range(depth):
            base = base / f"dep{(p + level) % 50:02d}" / "node_modules"
        pkg = base / f"lib{p:04d}"
        _write(pkg / "package.json", _text(rng, 400))
        for f in range(18):
            _write(pkg / "dist" / f"chunk{f:02d}.js", _text(rng, rng.randint(512, 6 * 1024)))
        _write(pkg / "bin" / "cli.js", b"#!/usr/bin/env node\n" + _text(rng, 300), 0o755)
        link = repo / "node_modules" / ".bin" / f"lib{p:04d}"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(pkg / "bin" / "cli.js", link.parent), link)
    # A few large, incompressible files (assets, fixtures).
    for b in range(n_big):
        _write(repo / "assets" / f"blob{b}.bin", rng.randbytes(big_size))
    # Odd corners a faithful copy must keep.
    _write(repo / ".env.example", b"KEY=value\n")
    _write(repo / "scripts" / "build.sh", b"#!/bin/sh\necho build\n", 0o755)
    (repo / "empty" / "dir").mkdir(parents=True)
    os.symlink("src", repo / "src-link")


def _history(repo: Path, rng: random.Random, scale: float) -> None:
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "initial import")
    sources = sorted((repo / "src").rglob("*.ts"))
    blobs = sorted((repo / "assets").glob("*.bin"))
    for c in range(4):
        for path in rng.sample(sources, k=min(len(sources), int(200 * scale) or 1)):
            path.write_bytes(path.read_bytes() + _text(rng, 200))
        blob = blobs[c % len(blobs)]
        blob.write_bytes(rng.randbytes(blob.stat().st_size))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"change {c + 1}")
    _git(repo, "repack", "-adq")
    _git(repo, "prune")


def ensure_repo(scale: float = 1.0) -> Path:
    """Return the cached repository for ``scale``, generating it when absent."""
    root = bench_dir()
    repo = root / f"repo-s{scale:g}"
    done = root / f"repo-s{scale:g}.done"
    if done.exists() and repo.is_dir():
        return repo
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    rng = random.Random(SEED)  # noqa: S311 - determinism, not secrecy
    _populate(repo, rng, scale)
    _history(repo, rng, scale)
    done.write_text("ok\n")
    return repo


def tree_stats(path: Path) -> tuple[int, int]:
    """(entries, bytes of regular files) under ``path``, symlinks not followed."""
    count = size = 0
    for dirpath, dirnames, filenames in os.walk(path):
        count += len(dirnames) + len(filenames)
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            size += st.st_size if not os.path.islink(os.path.join(dirpath, name)) else 0
    return count, size


def warm(path: Path) -> None:
    """Read every file so the page cache holds the tree (idle cache is handed back)."""
    # GNU tar skips reading data when writing to /dev/null itself: go through a pipe.
    done = proc.run(
        ["sh", "-c", 'tar -C "$1" -cf - . | cat > /dev/null', "warm", str(path)], timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"warming {path} failed: {done.stderr.strip()}")


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b: the methods of one round ran back to back, so the
    per-round ratio cancels the drift of a shared machine that medians of each alone keep."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def print_medians(times: dict[str, list[float]]) -> None:
    """One detail line per method: its median and every round's time."""
    for name, values in times.items():
        listed = ", ".join(f"{t:.2f}" for t in values)
        print(f"{name}: median {statistics.median(values):.2f}s of {listed}")


def timed_shell(command: str, env: Mapping[str, str]) -> float:
    """Seconds ``sh -c command`` took; an exception when it failed."""
    start = time.perf_counter()
    done = proc.run(["sh", "-c", command], env=env, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def alternate(
    ours: Callable[[int], float],
    theirs: Callable[[int], float],
    *,
    rounds: int,
    names: tuple[str, str],
) -> tuple[list[float], list[float]]:
    """Warm each method up once, then run them alternately ``rounds`` times (round
    number as argument, seconds back); each round and the medians go to stderr."""
    ours(-1)
    theirs(-1)
    a: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        a.append(ours(i))
        b.append(theirs(i))
        print(f"round {i}: {names[0]} {a[-1]:.3f} s, {names[1]} {b[-1]:.3f} s", file=sys.stderr)
    print(
        f"median: {names[0]} {statistics.median(a):.3f} s, {names[1]} {statistics.median(b):.3f} s",
        file=sys.stderr,
    )
    return a, b


if __name__ == "__main__":
    target = ensure_repo(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
    entries, size = tree_stats(target)
    print(f"{target}: {entries} entries, {size / 1e6:.0f} MB")
