"""The one process path: sessions, escalating stop, and no survivor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_runner import proc
from tests.procwatch import wait_for_text, wait_gone


def test_run_captures_and_uses_devnull_stdin() -> None:
    done = proc.run(["sh", "-c", "cat; echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_run_missing_program() -> None:
    with pytest.raises(FileNotFoundError):
        proc.run(["definitely-not-a-program-xyz"])


def test_run_timeout_kills_the_group() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        proc.run(["sh", "-c", "sleep 30 & wait"], timeout=0.3)


def test_spawn_new_session() -> None:
    child = proc.spawn(["sleep", "5"])
    try:
        assert os.getsid(child.pid) == child.pid
        assert os.getpgid(child.pid) != os.getpgrp()
    finally:
        proc.stop(child, grace=1.0)


def test_stop_prefers_sigint(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import pathlib, time\n"
        "try:\n"
        f"    pathlib.Path({str(ready)!r}).write_text('1')\n"
        "    time.sleep(30)\n"
        "except KeyboardInterrupt:\n"
        "    raise SystemExit(7)\n"
    )
    child = proc.spawn([sys.executable, "-c", code])
    wait_for_text(ready)
    assert proc.stop(child, grace=5.0) == 7


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).write_text('1')\n"
        "time.sleep(60)\n"
    )
    child = proc.spawn([sys.executable, "-c", code])
    wait_for_text(ready)
    assert proc.stop(child, grace=0.3) == -signal.SIGKILL


def test_stop_reaches_descendants_in_other_sessions(tmp_path: Path) -> None:
    # Like the CLI's Bash tool: a grandchild in a session of its own, ignoring SIGINT.
    pidfile = tmp_path / "pid"
    script = f"setsid sh -c 'trap \"\" INT; echo $$ > {pidfile}; exec sleep 60' & wait"
    child = proc.spawn(["sh", "-c", script])
    grandchild = int(wait_for_text(pidfile))
    assert grandchild in proc.descendants(child.pid)
    proc.stop(child, grace=0.5)
    assert wait_gone(grandchild)


def test_descendants_handles_parentheses_in_names(tmp_path: Path) -> None:
    weird = tmp_path / "a) b ("
    weird.symlink_to("/bin/sleep")
    child = proc.spawn(["sh", "-c", f"'{weird}' 30 & wait"])
    try:
        end = time.monotonic() + 5
        while not proc.descendants(child.pid) and time.monotonic() < end:
            time.sleep(0.01)
        assert len(proc.descendants(child.pid)) == 1
    finally:
        proc.stop(child, grace=0.5)
