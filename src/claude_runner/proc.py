"""The one way the runner starts and stops processes.

Every child runs in its own session (so a signal to its process group reaches what it
spawned), with stdin from /dev/null unless told otherwise. Stopping escalates SIGINT ->
SIGTERM -> SIGKILL with bounded waits and also reaches descendants that left the group
(the Claude Code CLI starts Bash-tool children in sessions of their own).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Completed:
    """Outcome of a captured run."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60.0,
) -> Completed:
    """Run to completion and capture text output. Raises FileNotFoundError when the
    program is missing and subprocess.TimeoutExpired (after killing the group)."""
    proc = spawn(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, grace=1.0)
        proc.communicate()
        raise
    except BaseException:
        # Interrupted by a signal (signals.Interrupted, KeyboardInterrupt): the child
        # must not outlive the runner.
        stop(proc, grace=1.0)
        raise
    return Completed(
        tuple(argv),
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    stdin: int | None = subprocess.DEVNULL,
    user: int | None = None,
    group: int | None = None,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a child, by default in a new session. stdin defaults to /dev/null (the CLI
    waits ~3 s on an open pipe and appends what it reads to the prompt); ``stdin=None``
    and ``new_session=False`` leave it the runner's terminal (interactive mode)."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=new_session,
        user=user,
        group=group,
        extra_groups=[] if user is not None else None,
    )


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        # comm may contain spaces and parentheses: the ppid follows the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _signal_all(pgid: int, pids: Sequence[int], sig: int) -> None:
    """Signal the child's group once, then each listed process outside that group
    (the child's group is its own unless it shares the runner's terminal)."""
    own_group = pgid != os.getpgrp()
    if own_group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if own_group and os.getpgid(pid) == pgid:
                continue
            os.kill(pid, sig)


def stop(
    proc: subprocess.Popen[bytes],
    *,
    grace: float = 5.0,
    first_signal: int = signal.SIGINT,
) -> int:
    """Stop ``proc`` and everything it started: ``first_signal``, then SIGTERM, then
    SIGKILL, each after ``grace`` seconds. Returns the child's return code."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    tree = [proc.pid, *descendants(proc.pid)]
    ladder = [first_signal, signal.SIGTERM] if first_signal != signal.SIGTERM else [first_signal]
    for sig in ladder:
        if proc.poll() is not None:
            break
        _signal_all(pgid, tree, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        tree = [*tree, *(p for p in descendants(proc.pid) if p not in tree)]
    if proc.poll() is None:
        proc.kill()
    # The child is reaped through Popen only (its pid may be reused once reaped);
    # what is left of its group and former children gets SIGKILL.
    returncode = proc.wait()
    reap_leftovers(pgid, tree[1:])
    return returncode


def reap_leftovers(pgid: int, pids: Sequence[int]) -> None:
    """SIGKILL whatever of a stopped child's group or tree is still alive."""
    _signal_all(pgid, pids, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Never waitpid here: that could reap a child another thread's Popen waits for.
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


def become_subreaper() -> bool:
    """Make orphaned descendants reparent to this process, so none escapes cleanup."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def exec_replace(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> NoReturn:
    """Replace the runner with ``argv`` (interactive mode: terminal and signals go to it)."""
    os.chdir(cwd)
    os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606
