"""The mount system calls of task workspaces, and the holder of a user namespace.

Imported by the runner (as root it mounts in its own mount namespace), and run as a
script, ``python -I -S mounts.py``, as the holder of the user and mount namespace an
unprivileged runner mounts in (``namespace.py``). So this module imports nothing but the
standard library.

Layers are passed to the kernel as ``/proc/self/fd/<n>`` of directories opened here, not
as their paths: overlayfs splits its options at ``,`` and ``:``, and a workspace path may
hold either (escaping rules differ between kernel versions; a descriptor path has none).
The cost is that ``/proc/self/mountinfo`` shows those descriptor paths as the layers; the
mount point is shown as it is.

Options: ``index=off`` everywhere (the default, said explicitly because some kernels are
built with it on). A writable overlay is ``volatile``: the kernel never syncs its upper
layer, so an agent's fsync there returns at once and, above all, unmounting does not
flush the whole file system under it (measured: 0.55 s per unmount with 300 MB of
unrelated dirty data on that file system; a stage of 16 tasks pays it 16 times). The
upper layer is a task's scratch space: its changes are preserved before the unmount,
and a run cut short by a machine crash is run again, its upper layers never remounted.
As root a writable overlay also gets ``redirect_dir=on`` (renaming a
directory that came from the workspace works, as on any file system; without it rename
fails with EXDEV) and ``metacopy=off`` (a changed file in the upper layer is always the
whole file). In a user namespace the kernel allows neither: it needs ``userxattr``
(``user.overlay.*`` attributes instead of ``trusted.overlay.*``), and directory renames
fail with EXDEV there.

Holder protocol (JSON lines): after ``unshare(CLONE_NEWUSER | CLONE_NEWNS)`` and the
identity maps (uid 0 inside = the runner's uid outside), the holder writes
``{"ok": true, "pid": N}``; then each request line
(``{"op": "overlay", "target", "lowers", "upper", "work"}`` or
``{"op": "unmount", "target", "detach"}``) gets ``{"ok": true}`` or
``{"ok": false, "errno": N, "error": "..."}``. It exits at the end of its input, which
also comes when the runner dies: no holder outlives its runner.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Sequence

MS_RDONLY = 0x1
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
# xattr namespaces of the overlay's markers, by mount kind.
TRUSTED = "trusted.overlay."
USER = "user.overlay."

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)


def overlay(
    target: str,
    lowers: Sequence[str],
    upper: str | None = None,
    work: str | None = None,
    *,
    userxattr: bool = False,
) -> None:
    """Mount an overlay of ``lowers`` (top first) at ``target``: writable into ``upper``
    (``work`` is its scratch directory, on the same file system), or read-only without
    one (the kernel then wants at least two lower layers)."""
    fds: list[int] = []

    def layer(path: str) -> str:
        fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        return f"/proc/self/fd/{fds[-1]}"

    try:
        options = ["lowerdir=" + ":".join(layer(p) for p in lowers)]
        flags = 0
        if upper is None:
            flags |= MS_RDONLY
        else:
            if work is None:
                raise ValueError("a writable overlay needs a work directory")
            options += [f"upperdir={layer(upper)}", f"workdir={layer(work)}", "volatile"]
            if not userxattr:
                options += ["redirect_dir=on", "metacopy=off"]
        options.append("index=off")
        if userxattr:
            options.append("userxattr")
        data = ",".join(options).encode()
        _check(_libc.mount(b"overlay", os.fsencode(target), b"overlay", flags, data), target)
    finally:
        for fd in fds:
            os.close(fd)


def unmount(target: str, *, detach: bool = False) -> None:
    """Unmount ``target`` (never following a symlink there); ``detach``: lazily, for a
    mount still in use."""
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if detach else 0)
    _check(_libc.umount2(os.fsencode(target), flags), target)


# --- the namespace holder ------------------------------------------------------------------
def _enter_namespace() -> None:
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    # Only then may an unprivileged process write its gid map.
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w", encoding="ascii") as f:
            f.write(text)


def _serve(request: dict[str, object]) -> None:
    op, target = request.get("op"), str(request["target"])
    if op == "overlay":
        lowers = request["lowers"]
        if not isinstance(lowers, list):
            raise ValueError("lowers must be a list")
        upper, work = request.get("upper"), request.get("work")
        overlay(
            target,
            [str(p) for p in lowers],
            None if upper is None else str(upper),
            None if work is None else str(work),
            userxattr=True,
        )
    elif op == "unmount":
        unmount(target, detach=bool(request.get("detach")))
    else:
        raise ValueError(f"unknown request {op!r}")


def _reply(reply: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def _fail(exc: BaseException) -> dict[str, object]:
    if isinstance(exc, OSError):
        return {"ok": False, "errno": exc.errno or 0, "error": exc.strerror or str(exc)}
    return {"ok": False, "errno": 0, "error": str(exc)}


def hold() -> int:
    """The holder's main loop (see the module docstring)."""
    try:
        _enter_namespace()
    except OSError as exc:
        _reply(_fail(exc))
        return 1
    _reply({"ok": True, "pid": os.getpid()})
    for line in sys.stdin:
        try:
            _serve(json.loads(line))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _reply(_fail(exc))
        else:
            _reply({"ok": True})
    return 0


if __name__ == "__main__":
    sys.exit(hold())
