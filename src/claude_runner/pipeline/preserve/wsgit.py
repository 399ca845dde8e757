"""The workspace's repository, reached as files: never by running git in it.

Git run with the workspace's ``GIT_DIR`` would read the workspace's config, and an
agent can put anything there (hooks, fsmonitor, filters, an ``include.path``, a
partial-clone remote that git fetches from). So the runner reads the few files it needs
(``HEAD``, refs, ``packed-refs``, ``index``, ``info/exclude``, a line of ``config``) and
writes the only two things it adds (loose objects, one new branch ref) itself.

Every path is opened relative to a directory descriptor, component by component, with
``O_NOFOLLOW``: a symlink anywhere inside ``.git`` is an error, never followed, so no
read or write leaves the repository through one. Reads are size-capped and never block
(``O_NONBLOCK``: a FIFO is refused, not waited on). A ref is created only if it does not
exist (``link(2)`` of a complete lock file: atomic, never overwrites), after its objects.

Supported: ``<workspace>/.git`` a real directory with the files ref backend, SHA-1 or
SHA-256. A ``.git`` file or symlink (linked worktree, submodule checkout, or planted), a
reftable repository, a workspace that is a subdirectory of a repository: the workspace
is treated as not a git repository (``open_workspace_git`` says why).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from claude_runner.errors import PreserveError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SMALL = 64 * 1024
_REFNAME = re.compile(rb"^refs/[^\0\n\r ~^:?*\[\\]+$")


@dataclass(frozen=True)
class WorkspaceGit:
    """An open workspace repository: ``fd`` is its ``.git`` directory."""

    fd: int
    git_dir: Path  # for messages and the runner repository's alternates
    object_format: str  # "sha1" or "sha256"
    exclude: bytes  # info/exclude, applied to the task copies

    @property
    def oid_size(self) -> int:
        return 32 if self.object_format == "sha256" else 20

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_workspace_git(workspace: Path) -> WorkspaceGit | str:
    """The workspace's repository, or why it is not used as one."""
    fd = _open_dot_git(workspace)
    if isinstance(fd, str):
        return fd
    why = _unsupported(fd)
    if why is not None:
        os.close(fd)
        return why
    config = read_file(fd, "config", limit=1 << 20) or b""
    real = Path(os.path.realpath(workspace)) / ".git"
    return WorkspaceGit(
        fd=fd,
        git_dir=real,
        object_format=_extension(config, b"objectformat") or "sha1",
        exclude=read_file(fd, "info/exclude", limit=1 << 20) or b"",
    )


def _open_dot_git(workspace: Path) -> int | str:
    try:
        top = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open the workspace {workspace}: {exc.strerror}"
    try:
        st = os.stat(".git", dir_fd=top, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            return "the workspace's .git is a symlink"
        if not stat.S_ISDIR(st.st_mode):
            return "the workspace's .git is a file (a linked worktree or submodule checkout)"
        return os.open(".git", _DIR_FLAGS, dir_fd=top)
    except FileNotFoundError:
        return "the workspace is not the top of a git repository"
    except OSError as exc:
        return f"cannot open the workspace's .git: {exc.strerror}"
    finally:
        os.close(top)


def _unsupported(fd: int) -> str | None:
    for name, want in (("HEAD", stat.S_ISREG), ("objects", stat.S_ISDIR), ("refs", stat.S_ISDIR)):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return f"the workspace's .git has no {name}"
        if not want(st.st_mode):
            return f"the workspace's .git/{name} is a symlink or of the wrong type"
    for name in ("reftable", "commondir"):
        with contextlib.suppress(OSError):
            os.stat(name, dir_fd=fd, follow_symlinks=False)
            return f"the workspace's repository has .git/{name} (not supported)"
    config = read_file(fd, "config", limit=1 << 20) or b""
    storage = _extension(config, b"refstorage")
    if storage not in (None, "files"):
        return f"the workspace's repository stores refs as {storage} (not supported)"
    fmt = _extension(config, b"objectformat")
    if fmt not in (None, "sha1", "sha256"):
        return f"the workspace's repository uses object format {fmt} (not supported)"
    return None


def _extension(config: bytes, key: bytes) -> str | None:
    """``extensions.<key>`` from a config file's text (a plain reading: enough for the
    two keys git itself requires there, never includes)."""
    section = b""
    for raw in config.splitlines():
        line = raw.strip()
        if line.startswith(b"["):
            section = line[1:].split(b"]")[0].split(b'"')[0].strip().lower()
            line = line.split(b"]", 1)[1].strip() if b"]" in line else b""
        if section != b"extensions" or b"=" not in line:
            continue
        name, _, value = line.partition(b"=")
        if name.strip().lower() == key:
            return (
                value.split(b"#")[0]
                .split(b";")[0]
                .strip()
                .strip(b'"')
                .lower()
                .decode("ascii", "replace")
            )
    return None


# --- reading -----------------------------------------------------------------------------
def open_path(dir_fd: int, path: str, flags: int) -> int:
    """Open ``path`` (relative, "/"-separated) below ``dir_fd`` without following any
    symlink on the way."""
    *dirs, name = path.split("/")
    fd = dir_fd
    try:
        for part in dirs:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            if fd != dir_fd:
                os.close(fd)
            fd = nxt
        return os.open(name, flags, dir_fd=fd)
    finally:
        if fd != dir_fd:
            os.close(fd)


def read_file(dir_fd: int, path: str, *, limit: int = _SMALL) -> bytes | None:
    """A regular file's bytes, or None when it is missing, not a regular file, or a
    symlink is on the way (an error for anything larger than ``limit``)."""
    try:
        fd = open_path(dir_fd, path, _READ_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > limit:
            raise PreserveError(f".git/{path} is larger than {limit} bytes")
        data = bytearray()
        while len(data) <= limit and (chunk := os.read(fd, 1 << 20)):
            data += chunk
        return bytes(data[:limit])
    finally:
        os.close(fd)


def resolve_head(dir_fd: int, oid_size: int) -> bytes | None:
    """The commit id HEAD names in the git directory ``dir_fd`` (None: unborn)."""
    target = b"HEAD"
    for _ in range(6):
        content = read_file(dir_fd, target.decode("utf-8", "surrogateescape"))
        if content is None and target != b"HEAD":
            content = _packed_ref(dir_fd, target)
        if content is None:
            if target == b"HEAD":
                raise PreserveError("the repository has no readable HEAD")
            return None  # an unborn branch
        content = content.strip()
        if content.startswith(b"ref:"):
            target = content[4:].strip()
            if not _REFNAME.match(target) or b".." in target or b"//" in target:
                raise PreserveError(f"HEAD names an invalid ref: {target[:200]!r}")
            continue
        return _oid(content, oid_size)
    raise PreserveError("HEAD is a chain of symbolic refs too long to follow")


def _oid(text: bytes, oid_size: int) -> bytes:
    try:
        oid = bytes.fromhex(text.decode("ascii"))
    except ValueError:
        oid = b""
    if len(oid) != oid_size:
        raise PreserveError(f"not an object id: {text[:100]!r}")
    return oid


def _packed_ref(dir_fd: int, refname: bytes) -> bytes | None:
    for name, value in _packed_refs(dir_fd):
        if name == refname:
            return value
    return None


def _packed_refs(dir_fd: int) -> Iterable[tuple[bytes, bytes]]:
    try:
        fd = open_path(dir_fd, "packed-refs", _READ_FLAGS)
    except OSError:
        return
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        for line in f:
            if line.startswith((b"#", b"^")):
                continue
            value, _, name = line.rstrip(b"\n").partition(b" ")
            yield name, value


# --- writing -----------------------------------------------------------------------------
def copy_objects(ws: WorkspaceGit, source: Path, oids: Iterable[str]) -> int:
    """Copy the loose objects ``oids`` (hex) of the objects directory ``source`` into
    the workspace repository (those not loose there came from the workspace already).
    Returns how many were written."""
    written = 0
    objects = os.open("objects", _DIR_FLAGS, dir_fd=ws.fd)
    try:
        for hexid in dict.fromkeys(oids):
            try:
                data = (source / hexid[:2] / hexid[2:]).read_bytes()
            except FileNotFoundError:
                continue
            fan = _subdir(objects, hexid[:2], "objects")
            try:
                written += _create(fan, hexid[2:], data, mode=0o444, lock=_tmp_name())
            finally:
                os.close(fan)
    finally:
        os.close(objects)
    return written


def create_ref(ws: WorkspaceGit, refname: str, oid: str) -> None:
    """Create the loose ref ``refname`` (``refs/heads/...``) at ``oid``; it must not
    exist yet, loose or packed, nor conflict with a ref named like one of its
    directories."""
    parts = refname.split("/")
    prefixes = {"/".join(parts[:i]).encode() for i in range(3, len(parts) + 1)}
    full = refname.encode()
    for name, _ in _packed_refs(ws.fd):
        if name in prefixes or name.startswith(full + b"/"):
            raise PreserveError(
                f"cannot create {refname}: the packed ref {name.decode()} is in the way"
            )
    fd = ws.fd
    opened: list[int] = []
    try:
        for i, part in enumerate(parts[:-1]):
            fd = _subdir(fd, part, "/".join(parts[: i + 1]))
            opened.append(fd)
        content = oid.encode() + b"\n"
        try:
            created = _create(fd, parts[-1], content, mode=0o666, lock=parts[-1] + ".lock")
        except FileExistsError:
            raise PreserveError(f"cannot create {refname}: it is locked") from None
        if not created:
            raise PreserveError(f"cannot create {refname}: it exists already")
    finally:
        for f in opened:
            os.close(f)


def _subdir(dir_fd: int, name: str, shown: str) -> int:
    """Open (creating if needed) the directory ``name`` below ``dir_fd``, never through
    a symlink."""
    try:
        os.mkdir(name, 0o777, dir_fd=dir_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise PreserveError(f"cannot create .git/{shown}: {exc.strerror}") from None
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        bad = exc.errno in (errno.ENOTDIR, errno.ELOOP)
        why = "it is a symlink or not a directory" if bad else exc.strerror
        raise PreserveError(f"cannot write into .git/{shown}: {why}") from None


def _tmp_name() -> str:
    return f"tmp_obj_{secrets.token_hex(8)}"


def _create(dir_fd: int, name: str, data: bytes, *, mode: int, lock: str) -> bool:
    """Write ``name`` complete or not at all: the new file ``lock``, then link(2) (which
    never replaces anything). False when ``name`` exists already."""
    fd = os.open(
        lock,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=dir_fd,
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(lock, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock, dir_fd=dir_fd)
