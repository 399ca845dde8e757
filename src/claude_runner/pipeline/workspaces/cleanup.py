"""Mounts left behind, and the claim that tells a live run from a dead one.

A runner that mounts (as root, in its own mount namespace) holds a claim on its run
directory for as long as it runs: an exclusive ``flock`` on the directory itself, on a
descriptor no child inherits. The kernel drops it when the runner exits, however it
exits (SIGKILL included). ``clean_leftovers`` unmounts the overlays inside run
directories that nobody claims, so a crashed run's mounts go at the next start, and a
second runner sharing the runs root never touches the mounts of one still running.

Mounts made inside a user namespace (an unprivileged runner) never show here: they live
and die with that namespace, whose holder exits with the runner.
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from claude_runner.errors import WorkspaceError
from claude_runner.pipeline.workspaces import mounts

_MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    point: Path
    fstype: str
    options: str  # the file system's own ("super") options


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as \ooo.
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)
    return os.fsdecode(raw.encode("latin-1", "surrogateescape"))


def current_mounts() -> list[Mount]:
    """The mounts of this process's mount namespace."""
    found: list[Mount] = []
    with open(_MOUNTINFO, encoding="latin-1", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            try:
                sep = fields.index("-", 6)
            except ValueError:
                continue
            options = fields[sep + 3] if len(fields) > sep + 3 else ""
            found.append(Mount(Path(_unescape(fields[4])), fields[sep + 1], options))
    return found


def mounts_under(path: Path) -> list[Mount]:
    """Mounts at ``path`` or below it, deepest first."""
    root = path.resolve()
    inside = [m for m in current_mounts() if m.point == root or m.point.is_relative_to(root)]
    return sorted(inside, key=lambda m: len(m.point.parts), reverse=True)


def has_mounts(path: Path) -> bool:
    """Whether anything is mounted at or below ``path`` (``runs clean`` refuses those:
    removing a tree through a mount would delete what lies under it)."""
    return bool(mounts_under(path))


class Claim:
    """An exclusive ``flock`` on a run directory while its runner lives."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fd: int | None = _lock(run_dir)
        if self._fd is None:
            raise WorkspaceError(f"the run directory {run_dir} is in use by another runner")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    close = release  # contextlib.closing


def in_use(run_dir: Path) -> bool:
    """Whether a live runner holds ``run_dir``'s claim."""
    fd = _lock(run_dir)
    if fd is None:
        return True
    os.close(fd)
    return False


def _lock(run_dir: Path) -> int | None:
    """A descriptor holding the run directory's lock, or None when another holds it."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise WorkspaceError(f"cannot open the run directory {run_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@dataclass(frozen=True)
class Leftovers:
    """What ``clean_leftovers`` did: mount points unmounted, and why others could not be."""

    unmounted: list[Path]
    failed: list[str]


def clean_leftovers(runs_root: Path) -> Leftovers:
    """Unmount the overlays inside run directories of ``runs_root`` that no live runner
    claims (deepest first, detached if still in use). A mount of the runs root or of a run
    directory itself is not the runner's and is left alone."""
    result = Leftovers([], [])
    if not runs_root.is_dir():
        return result
    root = runs_root.resolve()
    by_run: dict[Path, list[Path]] = {}
    for m in mounts_under(root):
        parts = m.point.relative_to(root).parts
        if m.fstype == "overlay" and len(parts) >= 2:
            by_run.setdefault(root / parts[0], []).append(m.point)
    for run_dir, points in by_run.items():
        try:
            fd = _lock(run_dir)
        except WorkspaceError as exc:
            result.failed.append(str(exc))
            continue
        if fd is None:
            continue  # a live runner's
        try:
            for point in points:  # deepest first
                try:
                    mounts.unmount(str(point), detach=True)
                except OSError as exc:
                    result.failed.append(f"cannot unmount {point}: {exc.strerror}")
                else:
                    result.unmounted.append(point)
        finally:
            os.close(fd)
    return result
