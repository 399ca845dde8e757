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
import subprocess
import threading
import time
from collections.abc import Callable

_SETTLE = 2.0
PIPE_DRAIN = 5.0


def marked(key: str, value: str, *, prefix: bool = False) -> list[int]:
    """Pids (other than ours) whose environment has ``key=value`` (or ``key=value...``)."""
    needle = f"{key}={value}".encode()
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item == needle or (prefix and item.startswith(needle)):
                found.append(int(entry.name))
                break
    return found


def _reap(pids: list[int]) -> None:
    """Collect those of ``pids`` that are our exited children. Never ``waitpid(-1)``:
    that would steal the exit status of a child another thread is waiting for."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def kill_marked(key: str, value: str, *, prefix: bool = False) -> list[int]:
    """SIGKILL every marked process and wait (bounded) until they are gone."""
    pids = marked(key, value, prefix=prefix)
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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


class Watchdog:
    """One thread per run that unblocks streams a leftover process holds open.

    A process the CLI started may inherit its stdout and outlive it, so the stream never
    ends. Once a watched CLI has exited and its stream is still open ``PIPE_DRAIN``
    seconds later, ``on_held_open`` runs (the task kills its marked processes, which
    closes the stream).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[object, tuple[subprocess.Popen[bytes], Callable[[], None]]] = {}
        self._exited: dict[object, float] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(
        self, key: object, child: subprocess.Popen[bytes], on_held_open: Callable[[], None]
    ) -> None:
        with self._lock:
            self._watched[key] = (child, on_held_open)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
                self._thread.start()

    def forget(self, key: object) -> None:
        with self._lock:
            self._watched.pop(key, None)
            self._exited.pop(key, None)

    def close(self) -> None:
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._wake.wait(0.25):
            now = time.monotonic()
            with self._lock:
                entries = list(self._watched.items())
            for key, (child, on_held_open) in entries:
                if child.poll() is None:
                    continue
                first = self._exited.setdefault(key, now)
                if now - first >= PIPE_DRAIN:
                    self.forget(key)
                    on_held_open()
