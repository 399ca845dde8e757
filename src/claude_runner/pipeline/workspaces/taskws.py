"""Making and releasing the task workspaces of one run.

``Workspaces.open`` claims the run directory (``cleanup.Claim``) and probes the methods
(``methods.py``); ``make`` gives a task its workspace, ``TaskWorkspace.release`` undoes
it, ``close`` releases whatever is left and ends the run's namespace helper: call it in
a ``finally``, so no mount outlives the runner (after a SIGKILL, ``clean_leftovers`` at
the next start removes what the kernel kept).

An overlay task's files next to its workspace directory ``<dest>``: ``<dest>.upper/``,
the upper layer (the task's changes, kept after the task: whiteouts are 0/0 character
devices, replaced directories carry ``*.overlay.opaque``). Overlayfs' scratch
directories (``workdir``) go to the run's ``.workspaces/work/``, removed by ``close``
in one go (deleting is slow on a file system that has just deleted much; a release only
unmounts). After release ``<dest>`` is an empty directory: the task's files are the
workspace (lower) plus the upper layer, and a ``worktree`` task's work is kept by
preservation (branch and patch) before the release.

The lower layer must not change while an overlay is mounted over it (overlayfs leaves
the result undefined). When tasks that may write the workspace itself (``shared``) run
alongside a stage's overlay tasks, ``stage_source`` copies the workspace once for the
stage and the overlays go over that copy.

Every step that may take long (a copy) takes a ``cancel`` event and can run in a helper
thread; a mount or unmount takes microseconds.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from claude_runner.copytree import copy_tree, remove_tree
from claude_runner.errors import WorkspaceError
from claude_runner.pipeline.taskspace import Seal, make_read_only
from claude_runner.pipeline.workspaces import cleanup, mounts, upper
from claude_runner.pipeline.workspaces.methods import (
    Guarantee,
    Method,
    Methods,
    Mounter,
    probe,
)

SCRATCH = ".workspaces"  # in the run directory, removed by ``close``


@dataclass(frozen=True)
class StageSource:
    """Where a stage's task workspaces come from."""

    path: Path  # the workspace itself, or the stage's snapshot of it
    snapshot: bool  # a copy was taken for the stage (the events say so)


@dataclass(eq=False)
class TaskWorkspace:
    """One task's workspace. ``release`` is idempotent and may be called from any thread."""

    path: Path  # where the task runs (its cwd)
    method: Method
    read_only: Guarantee | None  # snapshot_ro only
    lower: Path  # what it is a view or copy of
    upper: Path | None = None  # overlay worktree: the task's changes
    seal: Seal | None = None  # a read-only copy's seal (``taskspace.snapshot_writes``)
    notes: list[str] = field(default_factory=list)  # e.g. a fallback for this task
    _mounter: Mounter | None = None
    _on_release: Workspaces | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: bool = False

    @property
    def mounted(self) -> bool:
        return self._mounter is not None and not self._released

    @property
    def read_root(self) -> Path:
        """Where the runner itself reads the task's files: the workspace, except for a
        writable overlay in a user namespace. Only the namespace's processes see that
        mount (and git resolves ``/proc/<pid>/root`` paths back to the runner's view), so
        the runner reads the upper layer, which holds every path ``changed_paths``
        lists whole (no redirects, no metacopy there); a 0/0 character device in it is
        a deleted path. The start state is then the lower layer's."""
        if self.upper is not None and self.namespace:
            return self.upper
        return self.path

    @property
    def namespace(self) -> bool:
        """The workspace is a mount in the run's user namespace: start every process
        that must see it through ``command``."""
        return self._mounter is not None and self._mounter.xattrs == mounts.USER

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as it must be started to see this workspace (unchanged but in a user
        namespace): the CLI, a verify command, the git of preservation."""
        if self._mounter is None:
            return list(argv)
        return self._mounter.command(argv, self.path)

    def changed_paths(self) -> list[str] | None:
        """For preservation: the only paths worth examining (``upper.py``), or None when
        every path must be (a copy). Read after the task's processes are gone."""
        if self.method != "overlay":
            return None
        if self.upper is None:
            return []  # read-only: nothing can have changed
        assert self._mounter is not None  # noqa: S101
        return upper.changed_paths(self.upper, self.lower, self._mounter.xattrs)

    def release(self) -> None:
        """Unmount (detached, with a note, when a process still uses it); a copy stays as
        it is."""
        with self._lock:
            if self._released:
                return
            self._released = True
            try:
                if self._mounter is not None:
                    try:
                        self._mounter.unmount(self.path)
                    except OSError as exc:
                        if exc.errno == errno.EINVAL:  # not a mount point (any more)
                            self.notes.append("the workspace was unmounted by something else")
                        elif exc.errno == errno.EBUSY:
                            self._mounter.unmount(self.path, detach=True)
                            self.notes.append("the workspace was still in use at the end: detached")
                        else:
                            raise WorkspaceError(
                                f"cannot unmount {self.path}: {exc.strerror}"
                            ) from None
            finally:
                if self._on_release is not None:
                    self._on_release._forget(self)


class Workspaces:
    """The task workspaces of one run (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        methods: Methods,
        mounter: Mounter | None,
        claim: cleanup.Claim | None,
    ) -> None:
        self.run_dir = run_dir
        self.methods = methods
        self._mounter = mounter
        self._claim = claim  # None: the caller holds the run's claim
        self._live: set[TaskWorkspace] = set()
        self._lock = threading.Lock()
        self._empty = run_dir / SCRATCH / "empty"
        self._work = run_dir / SCRATCH / "work"
        self._count = itertools.count()

    @classmethod
    def open(
        cls,
        run_dir: Path,
        source: Path,
        env: Mapping[str, str],
        *,
        modes: Collection[str],
        namespace_ok: bool = True,
        claimed: bool = False,
    ) -> Workspaces:
        """Claim ``run_dir`` (unless the caller did: ``claimed``) and probe the methods
        for tasks of ``modes`` over ``source`` (UsageError for a bad
        ``PIPELINE_WORKSPACE_METHOD``, WorkspaceError when the run directory is someone
        else's)."""
        run_dir, source = Path(os.path.abspath(run_dir)), Path(os.path.abspath(source))
        claim = None if claimed else cleanup.Claim(run_dir)
        try:
            scratch = run_dir / SCRATCH
            if os.path.lexists(scratch):  # a killed runner's (its mounts are gone by now)
                remove_tree(scratch)
            scratch.mkdir()
            methods, mounter = probe(
                scratch=scratch, source=source, env=env, modes=modes, namespace_ok=namespace_ok
            )
        except BaseException:
            if claim is not None:
                claim.release()
            raise
        return cls(run_dir, methods, mounter, claim)

    def stage_source(
        self,
        source: Path,
        snapshot: Path,
        *,
        modes: Collection[str],
        shared_writers: bool,
        cancel: threading.Event | None = None,
    ) -> StageSource:
        """The source of a stage's tasks of ``modes``: ``source`` itself, or, when
        ``shared_writers`` (tasks that may write ``source`` run at the same time) and some
        of those tasks are overlays, a copy of it made at ``snapshot`` (by reflink where
        that works)."""
        overlays = any(self.methods.of(m)[0] == "overlay" for m in modes)
        source, snapshot = Path(os.path.abspath(source)), Path(os.path.abspath(snapshot))
        if not (shared_writers and overlays):
            return StageSource(source, snapshot=False)
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        copy_tree(source, snapshot, reflink=self.methods.reflink, cancel=cancel)
        return StageSource(snapshot, snapshot=True)

    def make(
        self,
        mode: str,
        source: Path,
        dest: Path,
        *,
        cancel: threading.Event | None = None,
        copy: str | None = None,
    ) -> TaskWorkspace:
        """The workspace of a task of ``mode`` (``worktree`` or ``snapshot_ro``) over
        ``source`` at ``dest`` (absent or empty). An overlay the kernel refuses for this
        one task falls back to a copy, with a note; ``copy``: why this task must have a
        copy instead of an overlay (the note)."""
        method, _ = self.methods.of(mode)
        source, dest = Path(os.path.abspath(source)), Path(os.path.abspath(dest))
        if method == "shared":
            raise ValueError(f"a {mode} task has no workspace of its own")
        read_only = mode == "snapshot_ro"
        notes: list[str] = []
        if method == "overlay" and copy is not None:
            notes.append(f"copied instead of an overlay: {copy}")
        elif method == "overlay" and self._mounter is not None:
            try:
                ws = self._overlay(source, dest, read_only=read_only)
            except WorkspaceError:
                raise
            except OSError as exc:
                notes.append(f"overlay refused for this task ({exc.strerror or exc}): copied")
            else:
                with self._lock:
                    self._live.add(ws)
                return ws
        reflink = self.methods.reflink
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy_tree(source, dest, reflink=reflink, cancel=cancel)
        return TaskWorkspace(
            path=dest,
            method="reflink" if reflink else "copy",
            read_only="checked" if read_only else None,
            lower=source,
            seal=make_read_only(dest) if read_only else None,
            notes=notes,
        )

    def _overlay(self, source: Path, dest: Path, *, read_only: bool) -> TaskWorkspace:
        mounter = self._mounter
        assert mounter is not None  # noqa: S101
        dest.mkdir(parents=True, exist_ok=True)
        with os.scandir(dest) as entries:
            if any(True for _ in entries):  # a mount would hide them (a copy refuses too)
                raise WorkspaceError(f"cannot mount on {dest}: the directory is not empty")
        if read_only:
            self._empty.mkdir(exist_ok=True)
            mounter.overlay(dest, [self._empty, source], None, None)
            return TaskWorkspace(
                path=dest,
                method="overlay",
                read_only="kernel",
                lower=source,
                _mounter=mounter,
                _on_release=self,
            )
        up = dest.with_name(dest.name + ".upper")
        work = self._work / str(next(self._count))
        up.mkdir()
        work.mkdir(parents=True)
        try:
            mounter.overlay(dest, [source], up, work)
        except BaseException:
            up.rmdir()
            work.rmdir()
            raise
        return TaskWorkspace(
            path=dest,
            method="overlay",
            read_only=None,
            lower=source,
            upper=up,
            _mounter=mounter,
            _on_release=self,
        )

    def __enter__(self) -> Workspaces:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _forget(self, ws: TaskWorkspace) -> None:
        with self._lock:
            self._live.discard(ws)

    def close(self) -> None:
        """Release every workspace still mounted, end the namespace helper, remove the
        run's scratch directory and drop the claim. Errors are collected and raised once,
        after everything was tried."""
        problems: list[str] = []
        with self._lock:
            live = list(self._live)
        for ws in live:
            try:
                ws.release()
            except WorkspaceError as exc:
                problems.append(str(exc))
        if self._mounter is not None:
            self._mounter.close()
            self._mounter = None
        remove_tree(self.run_dir / SCRATCH)
        if self._claim is not None:
            self._claim.release()
        if problems:
            raise WorkspaceError("; ".join(problems))
