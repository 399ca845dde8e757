"""Which way task workspaces are made in this run: probed once, at the run's start.

``PIPELINE_WORKSPACE_METHOD`` (``auto`` by default) asks for one:

- ``overlay``: an overlayfs mount over the workspace (a ``worktree`` task writes into
  its own upper layer; a ``snapshot_ro`` task gets a read-only overlay, so the kernel
  refuses every write, ``chmod`` included). As root the runner mounts directly; an
  unprivileged runner mounts in a user namespace of its own (``namespace.py`` says what
  that changes for an agent), and only when this method is asked for by name.
- ``reflink``: a copy whose files share their blocks with the workspace's
  (``cp --reflink=always``: XFS, Btrfs), so it costs per file, not per byte.
- ``copy``: the parallel faithful copy (``copytree.py``).

``auto`` takes the first that works: overlay when root, then reflink, then copy. A
method that was asked for but does not work falls back the same way, with a note
saying why. A ``snapshot_ro`` copy (reflink or copy) has directories 0555 and files
0444, which a process of the copy's owner can undo: its guarantee is ``checked`` (the
executor compares it after the task), a read-only overlay's is ``kernel``.

The probe tries what it may need and nothing else, in a scratch directory of the run:
an overlay of a small tree of its own (a file created, one deleted, a directory replaced
and, as root, one renamed; then the upper layer must show exactly those, markers
included, so the file system under the run directory can hold an upper layer), an
overlay over the workspace (the kernel refuses some lower file systems, and stacking
deeper than two overlays) and a read-only one; for reflinks, a clone of one of the
workspace's files into the run directory. Milliseconds of work (measured: 25-40 ms as
root on a busy disk, mostly creating the trial's files).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from claude_runner import proc
from claude_runner.errors import UsageError, WorkspaceError
from claude_runner.pipeline.workspaces import cleanup, mounts, namespace, upper

ENV_VAR = "PIPELINE_WORKSPACE_METHOD"
REQUESTS = ("auto", "overlay", "reflink", "copy")
Method = Literal["overlay", "reflink", "copy"]
Guarantee = Literal["kernel", "checked"]
_FICLONE = 0x40049409
_REFLINK_SCAN = 500  # directory entries looked at for a file to clone


def requested_method(env: Mapping[str, str]) -> str:
    """``PIPELINE_WORKSPACE_METHOD``, checked (empty or unset: ``auto``)."""
    raw = env.get(ENV_VAR, "")
    value = raw.strip().lower() or "auto"
    if value not in REQUESTS:
        raise UsageError(f"{ENV_VAR}={raw!r} is not one of {', '.join(REQUESTS)}")
    return value


class Mounter(Protocol):
    """Mounts in the runner's namespace (root) or in the run's user namespace."""

    xattrs: str  # prefix of the overlay's markers in an upper layer

    def overlay(
        self, target: Path, lowers: Sequence[Path], upper: Path | None, work: Path | None
    ) -> None: ...

    def unmount(self, target: Path, *, detach: bool = False) -> None: ...

    def command(self, argv: Sequence[str], cwd: Path) -> list[str]: ...

    def close(self) -> None: ...


class Direct:
    """Mounts made by the runner itself (root), in its own mount namespace."""

    xattrs = mounts.TRUSTED

    def overlay(
        self, target: Path, lowers: Sequence[Path], upper: Path | None, work: Path | None
    ) -> None:
        mounts.overlay(
            str(target),
            [str(p) for p in lowers],
            None if upper is None else str(upper),
            None if work is None else str(work),
        )

    def unmount(self, target: Path, *, detach: bool = False) -> None:
        mounts.unmount(str(target), detach=detach)

    def command(self, argv: Sequence[str], cwd: Path) -> list[str]:
        return list(argv)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Methods:
    """What the probe found, for the whole run."""

    requested: str
    worktree: Method
    snapshot_ro: Method
    read_only: Guarantee  # of a snapshot_ro workspace
    namespace: bool  # mounts are made in a user namespace (commands go through it)
    reflink: bool  # reflink copies work between the workspace and the run directory
    notes: tuple[str, ...]  # why a better method is not used

    def of(self, mode: str, *, overlay: bool = True) -> tuple[str, Guarantee | None]:
        """(``workspace_method``, ``read_only``) of a task of workspace ``mode``;
        ``overlay=False``: of such a task that must have a copy instead of an overlay."""
        if mode == "worktree":
            method: str = self.worktree
        elif mode == "snapshot_ro":
            method = self.snapshot_ro
        else:
            return "shared", None
        if method == "overlay" and not overlay:
            method = "reflink" if self.reflink else "copy"
        if mode == "worktree":
            return method, None
        return method, "kernel" if method == "overlay" else "checked"


def probe(
    *,
    scratch: Path,
    source: Path,
    env: Mapping[str, str],
    modes: Collection[str],
    namespace_ok: bool = True,
) -> tuple[Methods, Mounter | None]:
    """Find the methods of this run; the mounter when mounts are used (the caller closes
    it). ``scratch``: an empty directory of the run, on the file system task workspaces
    go to; ``modes``: the workspace modes the plan uses (only those are probed);
    ``namespace_ok``: whether the caller can start processes through a user namespace."""
    requested = requested_method(env)
    needed = {m for m in modes if m in ("worktree", "snapshot_ro")}
    notes: list[str] = []
    reflink = False
    if needed and requested != "copy":
        reflink, why = _try_reflink(source, scratch)
        if not reflink and requested in ("reflink", "overlay"):
            notes.append(f"reflink: {why}")
    mounter: Mounter | None = None
    if needed and requested in ("auto", "overlay"):
        mounter, why = _try_mounts(
            scratch, source, env, requested=requested, namespace_ok=namespace_ok
        )
        if mounter is None:
            notes.append(f"overlay: {why}")
    # (A namespace is only tried when overlay was asked for: then it serves both modes.)
    best: Method = "overlay" if mounter is not None else "reflink" if reflink else "copy"
    methods = Methods(
        requested=requested,
        worktree=best,
        snapshot_ro=best,
        read_only="kernel" if best == "overlay" else "checked",
        namespace=isinstance(mounter, namespace.Holder),
        reflink=reflink,
        notes=tuple(notes),
    )
    return methods, mounter


# --- reflinks -----------------------------------------------------------------------------
def _a_file(source: Path) -> Path | None:
    """A non-empty regular file of the workspace, near its top (breadth first)."""
    pending, seen = [source], 0
    while pending and seen < _REFLINK_SCAN:
        here = pending.pop(0)
        try:
            with os.scandir(here) as it:
                for entry in it:
                    seen += 1
                    found = _regular_or_dir(entry, pending)
                    if found is not None or seen >= _REFLINK_SCAN:
                        return found
        except OSError:
            continue
    return None


def _regular_or_dir(entry: os.DirEntry[str], pending: list[Path]) -> Path | None:
    """``entry`` if it is a non-empty regular file; a directory goes on ``pending``."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode) and st.st_size > 0:
        return Path(entry.path)
    if stat.S_ISDIR(st.st_mode):
        pending.append(Path(entry.path))
    return None


def _try_reflink(source: Path, scratch: Path) -> tuple[bool, str]:
    """Whether a file of ``source`` can be cloned into ``scratch``, and if not why."""
    sample = _a_file(source)
    if sample is None:
        return False, "no file in the workspace to try a clone with"
    target = scratch / "reflink-probe"
    try:
        src = os.open(sample, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"cannot read {sample}: {exc.strerror}"
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.ioctl(dst, _FICLONE, src)
        finally:
            os.close(dst)
            target.unlink()
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False, "the workspace and the run directory are on different file systems"
        return False, f"the file system does not clone files ({exc.strerror})"
    finally:
        os.close(src)
    return True, ""


# --- mounts -------------------------------------------------------------------------------
def _try_mounts(
    scratch: Path, source: Path, env: Mapping[str, str], *, requested: str, namespace_ok: bool
) -> tuple[Mounter | None, str]:
    """A mounter whose overlays work for this workspace and run directory, or why not."""
    inner = [m.point for m in cleanup.mounts_under(source) if m.point != source.resolve()]
    if inner:
        return None, (
            f"the workspace has mount points inside it ({inner[-1]}): an overlay would not "
            "show what is mounted there"
        )
    mounter, why = _mounter(env, requested=requested, namespace_ok=namespace_ok)
    if mounter is None:
        return None, why
    try:
        _trial(mounter, scratch, source)
    except (OSError, subprocess.SubprocessError) as exc:
        mounter.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, f"refused ({reason})"
    return mounter, ""


def _mounter(
    env: Mapping[str, str], *, requested: str, namespace_ok: bool
) -> tuple[Mounter | None, str]:
    """Who mounts: the runner itself (root) or a user namespace's helper; or why none."""
    if os.geteuid() == 0:
        return Direct(), ""
    if not namespace_ok:
        return None, (
            "not root: the pipeline executor mounts only as root (it does not start tasks "
            "in a user namespace)"
        )
    if requested != "overlay":
        return None, (
            "not root: mounts would need a user namespace, which changes what an agent can "
            f"do (see the README); {ENV_VAR}=overlay uses one"
        )
    reasons = namespace.blockers(env)
    if reasons:
        return None, "no user namespace: " + "; ".join(reasons)
    try:
        return namespace.Holder.start(sys.executable, env), ""
    except WorkspaceError as exc:
        return None, f"user namespace: {exc}"


def _trial(mounter: Mounter, scratch: Path, source: Path) -> None:
    """Mount what tasks will mount, once each; raise on the first refusal or when an
    upper layer does not record changes as ``upper.changed_paths`` reads them."""
    base = scratch / "probe"
    lower, up, work, merged = (base / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower / "d", lower / "r", up, work, merged):
        d.mkdir(parents=True)
    for f in (lower / "f", lower / "d" / "x", lower / "r" / "y"):
        f.write_bytes(b"x")
    renames = isinstance(mounter, Direct)  # see mounts.py: not in a user namespace
    mounter.overlay(merged, [lower], up, work)
    try:
        _change(mounter, merged, renames=renames)
    finally:
        mounter.unmount(merged)
    expected = ["d", "f", "new", *(["r", "r2"] if renames else [])]
    found = upper.changed_paths(up, lower, mounter.xattrs)
    if found != expected:
        raise WorkspaceError(f"the upper layer showed {found}, not {expected}")
    work2, up2 = base / "work2", base / "upper2"
    for d in (work2, up2):
        d.mkdir()
    mounter.overlay(merged, [source], up2, work2)
    mounter.unmount(merged)
    empty = scratch / "empty"
    empty.mkdir(exist_ok=True)
    mounter.overlay(merged, [empty, source], None, None)
    mounter.unmount(merged)
    # The trial's directories stay in the scratch directory, removed with it at the end
    # of the run (deleting right after creating is slow on some file systems).


def _change(mounter: Mounter, merged: Path, *, renames: bool) -> None:
    if isinstance(mounter, Direct):
        (merged / "new").write_bytes(b"n")
        (merged / "f").unlink()
        shutil.rmtree(merged / "d")
        (merged / "d").mkdir()
        if renames:
            (merged / "r").rename(merged / "r2")
        return
    # In the namespace only its processes see the mount: change it through one, which
    # also proves that tasks can be started there.
    argv = mounter.command(["sh", "-c", "echo n > new && rm f && rm -r d && mkdir d"], merged)
    done = proc.run(argv, timeout=30)
    if done.returncode != 0:
        raise WorkspaceError(f"a process in the namespace failed: {done.stderr.strip()[-300:]}")
