"""Fast, faithful copies of a directory tree: one destination or many at once.

The copy is a GNU tar pipe, ``tar -c | tar -x`` (two processes, so reading and writing
overlap; it measured faster than ``cp -a`` here, see ``bench/workspace_copy.py``).
``copy_tree_many`` reads the source once and fans the stream out with ``tee`` into one
extractor per destination, so N copies cost one read of the source.

What is kept: regular files with their bytes, modes and exec bits; hidden files and
``.git``; symlinks as symlinks, never followed, whatever they point at (outside the
tree, dangling); hard links within the tree; empty directories; the modification time
of files and directories to the nanosecond (POSIX/pax archive format); FIFOs (recreated
empty). Ownership is kept when the runner is root (numeric ids, no name mapping); a
non-root runner owns its copy.

Deliberate differences: every entry gets ``u+w`` in the copy, so the workspace is
writable even when the source is a read-only mount or has 0444 files / 0555 directories
(the other bits, exec bits included, stay as they were). Sockets are skipped (a socket
file means nothing without the process that listens on it). Extended attributes, ACLs
and access times are not copied.

Errors raise ``WorkspaceError`` naming the path and the reason; a failed copy removes
what it created, so a half-made tree is never mistaken for a workspace later.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, cast

from claude_runner import proc
from claude_runner.errors import WorkspaceError

# tar options shared by both ends. posix format keeps sub-second mtimes; atime/ctime
# records are dropped (they are not restored anyway and cost a header each).
_CREATE = (
    "tar",
    "--create",
    "--file=-",
    "--format=posix",
    "--pax-option=delete=atime,delete=ctime",
    "--mode=u+w",
    "--numeric-owner",
    "--warning=no-file-ignored",  # sockets: skipped on purpose
    ".",
)
_EXTRACT = (
    "tar",
    "--extract",
    "--preserve-permissions",  # no umask: modes as in the source (u+w added above)
    "--read-full-records",  # a FIFO fed by tee delivers short reads
    "--numeric-owner",
)
_STDERR_LINES = 5


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the tree at ``src`` to ``dst`` (absent, or an empty directory)."""
    copy_tree_many(src, [dst])


def copy_tree_many(src: Path, dsts: Sequence[Path]) -> None:
    """Make an independent copy of ``src`` at each of ``dsts``, reading ``src`` once."""
    if not dsts:
        return
    source = _check_source(src)
    targets = [_check_target(source, dst) for dst in dsts]
    if len({t.resolve() for t in targets}) != len(targets):
        raise WorkspaceError(f"cannot copy {src}: the destinations are not distinct")
    created: list[Path] = []
    try:
        for target in targets:
            if not target.exists():
                _mkdir(target)
                created.append(target)
        _run_pipeline(source, targets)
    except BaseException:
        for target in targets:
            _undo(target, remove_dir=target in created)
        raise


def _check_source(src: Path) -> Path:
    try:
        resolved = src.resolve(strict=True)
    except FileNotFoundError:
        raise WorkspaceError(f"cannot copy {src}: it does not exist") from None
    except (OSError, RuntimeError) as exc:
        raise WorkspaceError(f"cannot copy {src}: {_reason(exc)}") from None
    if not resolved.is_dir():
        raise WorkspaceError(f"cannot copy {src}: it is not a directory")
    return resolved


def _check_target(source: Path, dst: Path) -> Path:
    """``dst`` as an absolute path, after checking it is absent or an empty directory and
    that neither tree contains the other (tar would copy the copy into itself)."""
    target = Path(os.path.abspath(dst))
    if target.is_symlink() and not target.exists():
        raise WorkspaceError(f"cannot copy into {dst}: it is a dangling symlink")
    real = target.resolve()
    if real == source:
        raise WorkspaceError(f"cannot copy {source} into {dst}: it is the same directory")
    if real.is_relative_to(source) or source.is_relative_to(real):
        raise WorkspaceError(
            f"cannot copy {source} into {dst}: one directory lies inside the other"
        )
    if target.exists():
        if not target.is_dir():
            raise WorkspaceError(f"cannot copy into {dst}: it exists and is not a directory")
        try:
            with os.scandir(target) as entries:
                non_empty = any(True for _ in entries)
        except OSError as exc:
            raise WorkspaceError(f"cannot copy into {dst}: {_reason(exc)}") from None
        if non_empty:
            raise WorkspaceError(f"cannot copy into {dst}: the directory is not empty")
    return target


def _mkdir(target: Path) -> None:
    try:
        target.mkdir(parents=True)
    except OSError as exc:
        raise WorkspaceError(f"cannot create {target}: {_reason(exc)}") from None


def _run_pipeline(source: Path, targets: list[Path]) -> None:
    """``tar -c`` into one ``tar -x`` (one target) or into ``tee`` feeding FIFOs, one per
    extractor (several). All children are stopped if any of them fails to start."""
    with tempfile.TemporaryDirectory(prefix="claude-runner-copy-") as tmp:
        tmpdir = Path(tmp)
        children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        try:
            reader = _spawn("tar -c", [*_CREATE], source, tmpdir, children, stdout=True)
            stream = cast("IO[bytes]", reader.stdout)  # spawned with stdout=PIPE
            if len(targets) == 1:
                _spawn(
                    "tar -x",
                    [*_EXTRACT, "--file=-"],
                    targets[0],
                    tmpdir,
                    children,
                    stdin=stream.fileno(),
                )
            else:
                fifos = []
                for i, target in enumerate(targets):
                    fifo = tmpdir / f"stream{i}"
                    os.mkfifo(fifo, 0o600)
                    fifos.append(fifo)
                    _spawn(
                        f"tar -x ({target})",
                        [*_EXTRACT, f"--file={fifo}"],
                        target,
                        tmpdir,
                        children,
                    )
                _spawn(
                    "tee",
                    ["tee", "--output-error=warn-nopipe", *map(str, fifos)],
                    tmpdir,
                    tmpdir,
                    children,
                    stdin=stream.fileno(),
                    discard_stdout=True,
                )
            stream.close()  # the consumer owns the read end now
            failures = _wait_all(children)
        except BaseException:
            for _, child, _ in children:
                if child.poll() is None:
                    proc.stop(child, grace=1.0, first_signal=signal.SIGTERM)
            raise
        if failures:
            raise WorkspaceError(
                f"copying {source} to {', '.join(map(str, targets))} failed: " + "; ".join(failures)
            )


def _spawn(
    name: str,
    argv: list[str],
    cwd: Path,
    tmpdir: Path,
    children: list[tuple[str, subprocess.Popen[bytes], Path]],
    *,
    stdin: int = subprocess.DEVNULL,
    stdout: bool = False,
    discard_stdout: bool = False,
) -> subprocess.Popen[bytes]:
    # stderr goes to a file: a pipe left unread could fill up and stall the copy.
    log = tmpdir / f"stderr{len(children)}"
    with log.open("wb") as err:
        out = subprocess.PIPE if stdout else (subprocess.DEVNULL if discard_stdout else None)
        try:
            child = proc.spawn(argv, cwd=cwd, stdin=stdin, stdout=out, stderr=err.fileno())
        except OSError as exc:
            raise WorkspaceError(f"cannot start {argv[0]} to copy a tree: {_reason(exc)}") from None
    children.append((name, child, log))
    return child


def _wait_all(children: list[tuple[str, subprocess.Popen[bytes], Path]]) -> list[str]:
    failures: list[tuple[int, str]] = []
    for name, child, log in children:
        code = child.wait()
        if code != 0:
            lines = log.read_text("utf-8", "replace").strip().splitlines()
            detail = " | ".join(lines[:_STDERR_LINES]) or "no message"
            if len(lines) > _STDERR_LINES:
                detail += f" | ... ({len(lines) - _STDERR_LINES} more lines)"
            failures.append((code, f"{name} exited with {code}: {detail}"))
    # A reader killed by SIGPIPE only says that a consumer died first: report the cause.
    causes = [text for code, text in failures if code != -signal.SIGPIPE]
    return causes or [text for _, text in failures]


def _undo(target: Path, *, remove_dir: bool) -> None:
    """Remove what a failed copy wrote: the directory we created, or the contents of the
    empty directory we were given."""
    if not target.exists():
        return
    if remove_dir:
        remove_tree(target)
        return
    with contextlib.suppress(OSError):
        for entry in _entries(target):
            if entry.is_dir(follow_symlinks=False):
                remove_tree(Path(entry.path))
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _entries(path: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(path) as it:
        yield from it


def remove_tree(path: Path) -> None:
    """Delete a tree, first making its directories writable where needed (best effort)."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return
    _open_up(path)
    shutil.rmtree(path, ignore_errors=True)


def _open_up(path: Path) -> None:
    # chmod before listing: a directory without u+rx cannot be listed by its owner.
    try:
        os.chmod(path, os.lstat(path).st_mode | stat.S_IRWXU)
        entries = list(_entries(path))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _open_up(Path(entry.path))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
