"""Find and kill processes a task left behind, by an environment marker.

The Claude Code CLI starts Bash-tool children in sessions of their own, and a child may
double-fork; neither stays in the CLI's process group or (after reparenting) its tree.
Every task's environment carries ``<KEY>=<value>``; whatever still has it in
``/proc/<pid>/environ`` after the task ended belongs to that task and is killed.
(The runner does not make itself a child subreaper: reaping adopted orphans would need
``waitpid(-1)``, which races with the task threads waiting for their own CLIs. Killed
orphans are reaped by PID 1, in the image tini. A process that wipes its environment
escapes the marker; ``proc.stop`` still reaches it while it is in the CLI's tree.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

_SETTLE = 2.0


def _other_pids() -> Iterator[int]:
    """Every process in /proc but this one."""
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != me:
            yield int(entry.name)


def marked(key: str, value: str, *, prefix: bool = False) -> list[int]:
    """Pids (other than ours) whose environment has ``key=value`` (or ``key=value...``)."""
    needle = f"{key}={value}".encode()
    found = []
    for pid in _other_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if any(i == needle or (prefix and i.startswith(needle)) for i in environ.split(b"\0")):
            found.append(pid)
    return found


def holding_pipe(inode: int) -> list[int]:
    """Pids (other than ours) with a descriptor on the pipe ``inode``: what keeps a
    task's output open even after it wiped its environment and left the CLI's tree."""
    target = f"pipe:[{inode}]"
    found = []
    for pid in _other_pids():
        try:
            fds = os.scandir(f"/proc/{pid}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) == target:
                        found.append(pid)
                        break
    return found


def kill(pids: list[int]) -> list[int]:
    """SIGKILL ``pids`` and wait (bounded) until they are gone; those still alive."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _SETTLE
    while pids and time.monotonic() < deadline:
        _reap(pids)
        pids = [p for p in pids if _alive(p)]
        if pids:
            time.sleep(0.01)
    return pids


def _reap(pids: list[int]) -> None:
    """Collect those of ``pids`` that are our exited children. Never ``waitpid(-1)``:
    that would steal the exit status of a child another thread is waiting for."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def kill_marked(key: str, value: str, *, prefix: bool = False) -> list[int]:
    """SIGKILL every marked process and wait (bounded) until they are gone."""
    return kill(marked(key, value, prefix=prefix))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"
