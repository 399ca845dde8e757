"""A signal during start-up (copy, gh, git) ends the runner at once, with 128+N, and
takes the step's child process with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from claude_runner import proc
from tests.conftest import REPO
from tests.procwatch import wait_for_text, wait_gone


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_while_gh_hangs(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    # `gh auth status` that hangs (a network that drops packets): the runner must not
    # wait for gh's 20 s timeout, nor leave gh running.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pidfile = tmp_path / "gh.pid"
    gh = bindir / "gh"
    gh.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    gh.chmod(0o755)
    claude = bindir / "claude"
    claude.write_text("#!/bin/sh\nexit 0\n")
    claude.chmod(0o755)
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "IS_SANDBOX": "1",
        "SOURCE_WORKSPACE_DIR": str(REPO / "src"),
        "WORKSPACE_DIR": str(tmp_path / "ws"),
    }
    child = proc.spawn(
        [sys.executable, "-m", "claude_runner", "hello"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        gh_pid = int(wait_for_text(pidfile))
        os.kill(child.pid, sig)
        # Raises TimeoutExpired if the runner waits for gh instead of ending.
        _, err = child.communicate(timeout=10)
    finally:
        proc.stop(child, grace=1.0)
    assert child.returncode == code, err
    assert wait_gone(gh_pid)
    assert b"Traceback" not in err
    # The copy before gh was complete: the agent never started, the workspace is whole.
    assert (tmp_path / "ws" / "claude_runner" / "app.py").exists()
