"""Walking a task copy: which files belong to its state, as git's ``add -A`` would say,
without running ``add`` (which would read attributes and run filters).

The walk goes through directory descriptors (``O_NOFOLLOW``: a symlink is recorded as a
symlink, never entered), skips every entry named ``.git`` (the repository's own and
those of nested repositories: a nested repository's files are ordinary files here, its
``.git`` is never preserved), and skips FIFOs, sockets and devices (git stores none).
Whether an untracked path is ignored is asked of ``git check-ignore`` (runner-owned
``GIT_DIR``, the copy as work tree): it reads the copy's ``.gitignore`` files as data and
the workspace's ``info/exclude`` (copied into the runner's repository), nothing else,
and one process answers a whole walk. An ignored directory is not entered.

Names git refuses to store (``.GIT``, ``git~1``, ``.git.`` and the like, a symlinked
``.gitmodules``) and unreadable directories are reported as problems; the rest of the
walk goes on.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from claude_runner import proc
from claude_runner.errors import PreserveError
from claude_runner.pipeline.preserve.gitcmd import Budget, Git

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_BATCH_BYTES = 32 * 1024  # less than a pipe buffer: a batch never blocks (see _ask)
_FIELDS = 4  # check-ignore -v -n -z: source, line, pattern, path


def open_below(copy: Path, path: bytes) -> int:
    """The directory ``path`` of the copy (b"" for its top), opened without following a
    symlink anywhere on the way."""
    fd = os.open(copy, _DIR_FLAGS)
    for part in path.split(b"/") if path else []:
        try:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def lstat_below(copy: Path, path: bytes) -> os.stat_result | None:
    """``lstat`` of ``path`` in the copy, None when it is missing or beyond a symlink."""
    parent, _, name = path.rpartition(b"/")
    try:
        fd = open_below(copy, parent)
    except OSError:
        return None
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)


def readable_below(copy: Path, path: bytes) -> str | None:
    """Why git could not read the regular file ``path`` of the copy, or None."""
    parent, _, name = path.rpartition(b"/")
    try:
        fd = open_below(copy, parent)
        try:
            os.close(os.open(name, _READ_FLAGS, dir_fd=fd))
        finally:
            os.close(fd)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def fingerprint(
    copy: Path, path: bytes, budget: Budget
) -> frozenset[tuple[bytes, int, int, int, int, int]]:
    """Every entry below the directory ``path`` (``.git`` excluded) with its type,
    size, times and inode: equal fingerprints mean nothing there changed (given that
    the file system clock has moved past the newest ctime, see ``repository``)."""
    out: set[tuple[bytes, int, int, int, int, int]] = set()

    def walk(fd: int, prefix: bytes) -> None:
        budget.check("scanning a submodule")
        with os.scandir(fd) as it:
            entries = [(e.name, e.stat(follow_symlinks=False)) for e in it if e.name != ".git"]
        for text, st in entries:
            name = text.encode("utf-8", "surrogateescape")
            out.add(
                (prefix + name, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            )
            if stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(OSError):
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    try:
                        walk(sub, prefix + name + b"/")
                    finally:
                        os.close(sub)

    try:
        top = open_below(copy, path)
    except OSError:
        return frozenset()
    try:
        walk(top, b"")
    finally:
        os.close(top)
    return frozenset(out)


# Visitor: (path, directory descriptor, name, lstat) of a regular file or symlink.
Visit = Callable[[bytes, int, bytes, os.stat_result], None]


class IgnoreOracle:
    """One ``git check-ignore --stdin`` process, started at the first question."""

    def __init__(self, git: Git, work_tree: Path, budget: Budget) -> None:
        self._git = git
        self._work_tree = work_tree
        self._budget = budget
        self._child: subprocess.Popen[bytes] | None = None
        self._errors: Path | None = None
        self._pending = b""

    def ignored(self, paths: list[bytes]) -> list[bool]:
        """For each of ``paths`` (relative to the work tree), whether it is ignored."""
        answers: list[bool] = []
        batch: list[bytes] = []
        size = 0
        for path in paths:
            # "./" keeps a name starting with ":" from being read as pathspec magic.
            item = b"./" + path + b"\0"
            if batch and size + len(item) > _BATCH_BYTES:
                answers.extend(self._ask(batch))
                batch, size = [], 0
            batch.append(item)
            size += len(item)
        if batch:
            answers.extend(self._ask(batch))
        return answers

    def _start(self) -> subprocess.Popen[bytes]:
        if self._child is None:
            self._errors = self._git.git_dir / f"check-ignore-{os.getpid()}-{id(self)}.err"
            err = os.open(self._errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                self._child = proc.spawn(
                    self._git.argv(["check-ignore", "--no-index", "--stdin", "-z", "-v", "-n"]),
                    cwd=self._work_tree,
                    env=self._git.env(self._work_tree),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                )
            except OSError as exc:
                raise PreserveError(f"cannot run git check-ignore: {exc.strerror}") from None
            finally:
                os.close(err)
        return self._child

    def _ask(self, batch: list[bytes]) -> list[bool]:
        # The previous answers were all read, so git has consumed all earlier input and
        # the pipe is empty: a write smaller than its buffer returns at once, whatever
        # git does next. The answers are then read with a deadline.
        child = self._start()
        assert child.stdin is not None  # noqa: S101
        assert child.stdout is not None  # noqa: S101
        try:
            child.stdin.write(b"".join(batch))
            child.stdin.flush()
        except BrokenPipeError:
            self._fail()
        want = _FIELDS * len(batch)
        fd = child.stdout.fileno()
        data = self._pending
        while data.count(b"\0") < want:
            self._budget.check("git check-ignore")
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._fail()
            data += chunk
        fields = data.split(b"\0")
        self._pending = b"\0".join(fields[want:])
        return [
            bool(fields[i + 2]) and not fields[i + 2].startswith(b"!")
            for i in range(0, want, _FIELDS)
        ]

    def _fail(self) -> None:
        self.close()
        why = ""
        if self._errors is not None:
            with contextlib.suppress(OSError):
                why = self._errors.read_text("utf-8", "replace").strip()[-500:]
        raise PreserveError(f"git check-ignore failed: {why or 'it exited early'}")

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            with contextlib.suppress(OSError):
                if child.stdin is not None:
                    child.stdin.close()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.stop(child, grace=1.0)
            if child.stdout is not None:
                child.stdout.close()
        if self._errors is not None:
            self._errors.unlink(missing_ok=True)


# Code points HFS+ ignores in names (git refuses ".git" spelt with them).
_HFS_IGNORED = frozenset(
    [0x200C, 0x200D, 0x200E, 0x200F, 0xFEFF, *range(0x202A, 0x202F), *range(0x206A, 0x2070)]
)


def git_refuses(name: bytes, *, link: bool) -> bool:
    """Whether git (``verify_path`` with its default NTFS/HFS protections) refuses
    ``name`` as a path component. ``.git`` itself is skipped before this is asked."""
    forms = {name.lower()}
    with contextlib.suppress(UnicodeDecodeError):
        text = name.decode("utf-8")
        forms.add("".join(c for c in text if ord(c) not in _HFS_IGNORED).lower().encode())
    for form in forms:
        for stem in (b".git", b"git~1"):
            if form.startswith(stem) and not form[len(stem) :].split(b":")[0].strip(b" ."):
                return True
        if link and (form.rstrip(b" .") == b".gitmodules" or form.startswith(b"gitmod~")):
            return True
    return False


class Walker:
    """Walks directories of a copy that git does not walk for us (nested repositories:
    nothing below them is tracked, so every entry is asked about ignoring)."""

    def __init__(self, copy: Path, oracle: IgnoreOracle, budget: Budget) -> None:
        self.copy = copy
        self.oracle = oracle
        self.budget = budget
        self.tracked: frozenset[bytes] = frozenset()
        self.problems: list[str] = []

    def _problem(self, path: bytes, why: str) -> None:
        self.problems.append(f"{os.fsdecode(path)}: {why}")

    def walk_tree(self, path: bytes, visit: Visit) -> None:
        """Every file below the directory ``path`` (relative to the copy; reached
        without following a symlink, else nothing is visited)."""
        try:
            fd = open_below(self.copy, path)
        except OSError:
            return
        try:
            self._walk_dir(fd, path + b"/", visit)
        finally:
            os.close(fd)

    def _enter(self, parent: int, name: bytes, path: bytes, visit: Visit) -> None:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            self._problem(path, f"cannot enter the directory: {exc.strerror}")
            return
        try:
            self._walk_dir(fd, path + b"/", visit)
        finally:
            os.close(fd)

    def _walk_dir(self, fd: int, prefix: bytes, visit: Visit) -> None:
        self.budget.check("scanning the task's copy")
        try:
            dirs, files = self._list(fd, prefix)
        except OSError as exc:
            where = prefix.rstrip(b"/") or b"."
            self._problem(where, f"cannot list the directory: {exc.strerror}")
            return
        tracked = self.tracked
        untracked = [path for _, path in dirs if path not in tracked]
        untracked += [path for _, path, _ in files if path not in tracked]
        ignored: set[bytes] = set()
        if untracked:
            answers = self.oracle.ignored(untracked)
            ignored = {p for p, yes in zip(untracked, answers, strict=True) if yes}
        for name, path, st in files:
            if path not in ignored:
                visit(path, fd, name, st)
        for name, path in dirs:
            if path not in ignored:
                self._enter(fd, name, path, visit)

    def _list(
        self, fd: int, prefix: bytes
    ) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes, os.stat_result]]]:
        """The directories and the files (regular or symlinks) of a directory, ``.git``
        left out; names git refuses are problems."""
        dirs: list[tuple[bytes, bytes]] = []
        files: list[tuple[bytes, bytes, os.stat_result]] = []
        with os.scandir(fd) as it:
            for entry in it:
                text = entry.name
                if text == ".git":
                    continue
                name = text.encode("utf-8", "surrogateescape")
                path = prefix + name
                if entry.is_dir(follow_symlinks=False):
                    if _suspicious(text) and git_refuses(name, link=False):
                        self._problem(path, "git cannot store this name")
                    else:
                        dirs.append((name, path))
                    continue
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                    if text == ".gitignore":
                        _refuse_ignore_file(path)
                    continue
                if _suspicious(text) and git_refuses(name, link=stat.S_ISLNK(mode)):
                    self._problem(path, "git cannot store this name")
                    continue
                files.append((name, path, st))
        return dirs, files


def _suspicious(name: str) -> bool:
    """Cheap filter before ``git_refuses``: every name it refuses contains "git" (or
    "gitmod") in some case, or a non-ASCII character git ignores when comparing."""
    return not name.isascii() or "git" in name.lower()


def _refuse_ignore_file(path: bytes) -> None:
    # git would open it to read the patterns, and block on a FIFO.
    raise PreserveError(
        f"{os.fsdecode(path)} is not a regular file: the copy's ignore rules cannot be read"
    )
