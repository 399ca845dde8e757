"""Single-prompt output relayed through the masker, under faults the real CLI does not
produce on demand (tests/fake_agent.py): a secret split across two stderr writes, a
process the CLI left behind holding its output open."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tests import fake_agent
from tests.conftest import RunRunner
from tests.procwatch import wait_for_text

SECRET = "sk-test-relay-secret-0123456789abcdef"


def _env(tmp_path: Path) -> dict[str, str]:
    source = tmp_path / "source"
    source.mkdir()
    return {
        **os.environ,
        "ANTHROPIC_API_KEY": SECRET,
        "CLAUDE_BIN": fake_agent.install(tmp_path),
        "SOURCE_WORKSPACE_DIR": str(source),
        "WORKSPACE_DIR": str(tmp_path / "ws"),
        "IS_SANDBOX": "1",
    }


def test_a_secret_split_across_stderr_writes_is_masked(
    tmp_path: Path, run_runner: RunRunner
) -> None:
    done = run_runner(["-vv", "stderr-secret"], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert SECRET[:16] not in done.stderr
    assert SECRET[-16:] not in done.stderr
    assert "warning: key *** rejected\n" in done.stderr


def test_a_process_left_holding_the_output_does_not_hold_the_runner(
    tmp_path: Path, run_runner: RunRunner
) -> None:
    pid_file = tmp_path / "daemon.pid"
    try:
        done = run_runner(["-vv", "daemon-unmarked", str(pid_file)], _env(tmp_path), timeout=60)
        assert done.returncode == 0, done.stderr
        assert '"type": "result"' in done.stdout or '"type":"result"' in done.stdout
    finally:
        with contextlib.suppress(AssertionError, ProcessLookupError, ValueError):
            os.kill(int(wait_for_text(pid_file, 5)), signal.SIGKILL)
