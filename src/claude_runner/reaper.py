"""A watchman process that cleans up after the runner if the runner dies without doing so.

The runner stops every agent itself on every exit it sees (an error, a signal). It cannot
on ``kill -9``, an OOM kill or a crash of the interpreter: the CLIs and their tools would
run on under PID 1. So each run that starts agents first starts this small process (a
separate Python interpreter running only the standard library, in a session of its own,
immune to SIGINT/SIGTERM) and keeps the write end of a pipe whose read end is the
watchman's stdin. The runner's end is close-on-exec, so no agent inherits it: the pipe
closes exactly when the runner's process is gone, whatever killed it.

Lines the runner sends: ``group <pgid>`` / ``ungroup <pgid>`` (a CLI's process group
while it runs), ``scrub <path>`` (a file holding credentials to delete), ``umount <path>``
(a mount to undo), ``done`` (a clean exit: do nothing). On end-of-file without ``done``
the watchman SIGKILLs every process whose environment carries the run's marker and every
group it was told about, repeats until a scan finds none, then scrubs and unmounts.
How long agents outlive a killed runner is measured by a test and quoted in the README.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from claude_runner import proc

# The watchman's program: standard library only, so it starts fast and cannot fail on an
# import; it must not rely on the runner's modules (the venv may be gone by then).
_PROGRAM = r"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
marker = sys.argv[1].encode()
groups, scrub, mounts, done, buf = set(), [], [], False, b""
while True:
    try:
        chunk = os.read(0, 65536)
    except InterruptedError:
        continue
    if not chunk:
        break
    buf += chunk
    *lines, buf = buf.split(b"\n")
    for line in lines:
        word, _, arg = line.decode("utf-8", "surrogateescape").partition(" ")
        if word == "done":
            done = True
        elif word == "group":
            groups.add(int(arg))
        elif word == "ungroup":
            groups.discard(int(arg))
        elif word == "scrub":
            scrub.append(arg)
        elif word == "umount":
            mounts.append(arg)
if done:
    sys.exit(0)

def marked():
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(e.startswith(marker) for e in env):
            found.append(int(name))
    return found

deadline = time.monotonic() + 30
quiet = 0
while time.monotonic() < deadline and quiet < 3:
    for g in list(groups):
        try:
            os.killpg(g, signal.SIGKILL)
        except OSError:
            groups.discard(g)
    pids = marked()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    quiet = 0 if pids or groups else quiet + 1
    time.sleep(0.02)
for path in reversed(mounts):
    subprocess.run(["umount", "-l", "--", path], stderr=subprocess.DEVNULL, check=False)
for path in scrub:
    try:
        os.unlink(path)
    except OSError:
        pass
"""


class Watchman:
    """The runner's side of the watchman (see the module docstring)."""

    def __init__(self, marker: str) -> None:
        read_end, self._fd = os.pipe2(os.O_CLOEXEC)
        try:
            self._child = proc.spawn(
                [sys.executable, "-I", "-S", "-c", _PROGRAM, marker],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(read_end)

    def _send(self, line: str) -> None:
        if self._fd < 0:
            return
        data = (line + "\n").encode("utf-8", "surrogateescape")
        with contextlib.suppress(OSError):  # the watchman died: nothing left to tell
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]

    def group(self, pgid: int) -> None:
        self._send(f"group {pgid}")

    def ungroup(self, pgid: int) -> None:
        self._send(f"ungroup {pgid}")

    def scrub(self, path: Path) -> None:
        self._send(f"scrub {path}")

    def umount(self, path: Path) -> None:
        self._send(f"umount {path}")

    def close(self) -> None:
        """The runner cleaned up itself: let the watchman go without doing anything."""
        if self._fd < 0:
            return
        self._send("done")
        os.close(self._fd)
        self._fd = -1
        with contextlib.suppress(Exception):
            self._child.wait(timeout=5)

    def __enter__(self) -> Watchman:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
