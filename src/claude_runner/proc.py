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
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from claude_runner import procs

_PR_SET_CHILD_SUBREAPER = 36
_CANCEL_POLL = 0.05


@dataclass(frozen=True)
class Completed:
    """Outcome of a captured run."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Cancelled(Exception):
    """``run`` stopped its child because the caller's cancel event was set."""


@dataclass(frozen=True)
class CompletedBytes:
    """Outcome of a captured run, output as bytes (``run_bytes``)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60.0,
    cancel: threading.Event | None = None,
) -> Completed:
    """Run to completion and capture text output. Raises FileNotFoundError when the
    program is missing, subprocess.TimeoutExpired after ``timeout`` seconds and
    ``Cancelled`` as soon as ``cancel`` is set (the child's group stopped either way)."""
    done = run_bytes(argv, cwd=cwd, env=env, timeout=timeout, cancel=cancel)
    return Completed(
        done.argv,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def run_bytes(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float | None = 60.0,
    cancel: threading.Event | None = None,
) -> CompletedBytes:
    """``run`` with bytes in and out: ``input`` is the child's stdin (else /dev/null),
    given through an unlinked temporary file (Popen.communicate cannot be polled for
    ``cancel`` once it has started writing an input: a retry drops the rest)."""
    if input is None:
        child = spawn(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    else:
        with tempfile.TemporaryFile() as feed:
            feed.write(input)
            feed.seek(0)
            child = spawn(
                argv,
                cwd=cwd,
                env=env,
                stdin=feed.fileno(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = _CANCEL_POLL if cancel is not None else None
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                wait = left if wait is None else min(wait, left)
            try:
                out, err = child.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(list(argv), timeout or 0.0) from None
                if cancel is not None and cancel.is_set():
                    raise Cancelled(argv[0]) from None
    except BaseException:
        # Timed out, cancelled or interrupted by a signal (signals.Interrupted,
        # KeyboardInterrupt): the child must not outlive the call.
        stop(child, grace=1.0)
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
        raise
    return CompletedBytes(tuple(argv), child.returncode, out, err)


def run_streaming(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None,
    cancel: threading.Event | None = None,
    on_output: Callable[[bytes], None],
) -> int:
    """Run to completion, handing stdout and stderr (one stream, as written) to
    ``on_output`` as it arrives: a command whose output may be large (a test suite).
    Raises like ``run``; the child's group is stopped on every way out."""
    child = spawn(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None  # noqa: S101 - asked for above
    fd = child.stdout.fileno()
    os.set_blocking(fd, False)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                wait = _CANCEL_POLL
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                if selector.select(wait):
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    on_output(chunk)
                _check_stop(argv, deadline, timeout, cancel)
        return child.wait()
    except BaseException:
        stop(child, grace=1.0)
        raise
    finally:
        child.stdout.close()


def _check_stop(
    argv: Sequence[str],
    deadline: float | None,
    timeout: float | None,
    cancel: threading.Event | None,
) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise subprocess.TimeoutExpired(list(argv), timeout or 0.0)
    if cancel is not None and cancel.is_set():
        raise Cancelled(argv[0])


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
    """The pids of ``pid``'s live descendants, children before grandchildren."""
    return [p.pid for p in procs.descendants(pid)]


def _signal_all(pgid: int, tree: Sequence[procs.Proc], sig: int) -> None:
    """Signal the child's group once, then each listed process outside that group (the
    child's group is its own unless it shares the runner's terminal)."""
    own_group = pgid != os.getpgrp()
    if own_group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for p in tree:
        if own_group and p.pgid == pgid:
            continue
        procs.send(p, sig)


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
    me = procs.of_pid(proc.pid)  # not reaped yet: the pid is still the child's
    tree = [*([me] if me is not None else []), *procs.descendants(proc.pid)]
    ladder = [first_signal, signal.SIGTERM] if first_signal != signal.SIGTERM else [first_signal]
    for sig in ladder:
        if proc.poll() is not None:
            break
        _signal_all(pgid, tree, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        tree = [*tree, *(p for p in procs.descendants(proc.pid) if p not in tree)]
    if proc.poll() is None:
        proc.kill()
    # The child is reaped through Popen only (its pid may be reused once reaped);
    # what is left of its group and former children gets SIGKILL.
    returncode = proc.wait()
    reap_leftovers(pgid, tree)
    return returncode


def reap_leftovers(pgid: int, tree: Sequence[procs.Proc]) -> None:
    """SIGKILL whatever of a stopped child's group or tree is still alive."""
    _signal_all(pgid, tree, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(procs.alive(p) for p in tree):
        time.sleep(0.01)


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
