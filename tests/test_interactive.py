"""Interactive mode: the runner replaces itself with the real CLI, which owns the terminal.

Driven for real under tmux: the runner starts in a detached tmux pane, the test types a
prompt with send-keys and polls the screen until the stand-in API's reply shows up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from claude_runner import proc
from claude_runner.agent import interactive_argv
from tests.conftest import DUMMY_API_KEY, RunRunner
from tests.fakeapi import FakeMessagesAPI, Text, first_user_text

pytestmark = pytest.mark.cli

SESSION = "runner"
DEADLINE = 60.0
# The CLI's footer once its input box is ready in bypass-permissions mode.
READY = "bypass permissions on"


class Tmux:
    """A private tmux server (own socket and config) holding one detached session."""

    def __init__(self, tmp: Path, env: Mapping[str, str]) -> None:
        self.socket = tmp / "tmux.sock"
        self.config = tmp / "tmux.conf"
        # Keep a dead pane on screen so a failure can show what the process printed.
        self.config.write_text("set -g remain-on-exit on\nset -g history-limit 5000\n")
        self.env = dict(env)

    def cmd(self, *args: str) -> str:
        done = proc.run(
            ["tmux", "-S", str(self.socket), "-f", str(self.config), *args],
            env=self.env,
            timeout=30,
        )
        assert done.returncode == 0, f"tmux {' '.join(args)}: {done.stderr}"
        return done.stdout

    def start(self, argv: list[str], *, cwd: Path) -> None:
        # Several arguments after the options: tmux execs them directly, with no shell,
        # so the pane's process is the runner itself.
        self.cmd("new-session", "-d", "-s", SESSION, "-x", "150", "-y", "50", "-c", str(cwd), *argv)

    def pane_pid(self) -> int:
        return int(self.cmd("display-message", "-p", "-t", SESSION, "#{pane_pid}").strip())

    def screen(self) -> str:
        return self.cmd("capture-pane", "-p", "-J", "-S", "-", "-t", SESSION)

    def wait_for(self, what: str, predicate: Callable[[str], bool]) -> str:
        """Poll the screen until ``predicate`` holds; fail with the screen otherwise."""
        deadline = time.monotonic() + DEADLINE
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() >= deadline:
                pytest.fail(f"no {what} on screen within {DEADLINE:.0f}s; screen:\n{screen}")
            time.sleep(0.1)

    def exit_status(self, pid: int) -> int:
        """Poll until the pane's process ``pid`` has ended; its exit status. tmux 3.3
        sometimes marks the pane dead without reaping the process, so the status of a
        zombie is read from /proc instead."""
        deadline = time.monotonic() + DEADLINE
        while True:
            fields = self.cmd(
                "display-message", "-p", "-t", SESSION, "#{pane_dead} #{pane_dead_status}"
            ).split()
            if fields[:1] == ["1"]:
                if len(fields) == 2:
                    return int(fields[1])
                status = _zombie_status(pid)
                if status is not None:
                    return status
            if time.monotonic() >= deadline:
                pytest.fail(f"the session did not end within {DEADLINE:.0f}s:\n{self.screen()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """Stop the server; make sure no process of the pane survives it."""
        pids: list[int] = []
        with contextlib.suppress(AssertionError, ValueError):
            pane = self.pane_pid()
            pids = [pane, *proc.descendants(pane)]
        with contextlib.suppress(AssertionError):
            self.cmd("kill-server")
        deadline = time.monotonic() + 10
        while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _zombie_status(pid: int) -> int | None:
    """The exit status of an unreaped process (the last field of /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return os.waitstatus_to_exitcode(int(fields[-1])) if fields[0] == "Z" else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _seed_claude_home(home: Path, workspace: Path, api_key: str) -> None:
    """Pre-answer the CLI's first-run dialogs: onboarding, trusting the folder, using
    the API key from the environment, and the bypass-permissions warning."""
    state = {
        "hasCompletedOnboarding": True,
        "projects": {str(workspace): {"hasTrustDialogAccepted": True}},
        "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
    }
    (home / ".claude.json").write_text(json.dumps(state))
    (home / ".claude").mkdir(exist_ok=True)
    (home / ".claude" / "settings.json").write_text(
        json.dumps({"skipDangerousModePermissionPrompt": True})
    )


@pytest.fixture
def tmux(tmp_path: Path, claude_env: dict[str, str]) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        reason = "tmux not found: run scripts/setup-dev.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    # A short socket path: unix socket paths are limited to ~100 bytes.
    server = Tmux(tmp_path, {**claude_env, "TERM": "xterm-256color"})
    try:
        yield server
    finally:
        server.kill()


def test_interactive_session_under_a_terminal(
    fake_api: FakeMessagesAPI,
    claude_bin: str,
    claude_env: dict[str, str],
    tmux: Tmux,
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "notes.txt").write_text("copied before the session starts\n")
    workspace = tmp_path / "workspace"
    _seed_claude_home(Path(claude_env["HOME"]), workspace, claude_env["ANTHROPIC_API_KEY"])
    tmux.env |= {"SOURCE_WORKSPACE_DIR": str(source), "WORKSPACE_DIR": str(workspace)}
    fake_api.on("marker-interactive", Text("interactive reply from the fake API"))

    tmux.start([sys.executable, "-m", "claude_runner", "--model", "sonnet"], cwd=tmp_path)
    runner_pid = tmux.pane_pid()
    tmux.wait_for("input prompt", lambda s: READY in s)

    # The runner exec'd the CLI: same pid, now the claude binary with the builder's argv,
    # running in the copied workspace.
    assert Path(f"/proc/{runner_pid}/exe").resolve() == Path(claude_bin).resolve()
    cmdline = Path(f"/proc/{runner_pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in cmdline] == interactive_argv(claude_bin, model="sonnet")
    assert Path(f"/proc/{runner_pid}/cwd").resolve() == workspace.resolve()
    assert (workspace / "notes.txt").read_text() == "copied before the session starts\n"

    prompt = "hello marker-interactive"
    tmux.cmd("send-keys", "-t", SESSION, "-l", prompt)
    tmux.wait_for("typed prompt", lambda s: prompt in s)
    tmux.cmd("send-keys", "-t", SESSION, "Enter")
    tmux.wait_for("reply", lambda s: "interactive reply from the fake API" in s)

    [body] = fake_api.wait_for_requests(1)
    assert prompt in first_user_text(body)
    assert "sonnet" in body["model"]
    assert {h.get("x-api-key") for h in fake_api.headers} == {DUMMY_API_KEY}
    # Still the same process: the session goes on until the user quits.
    assert Path(f"/proc/{runner_pid}/exe").resolve() == Path(claude_bin).resolve()

    tmux.cmd("send-keys", "-t", SESSION, "-l", "/exit")
    # The slash-command menu shows the command once the input box has taken it.
    tmux.wait_for("the /exit command in the menu", lambda s: "Exit the CLI" in s)
    tmux.cmd("send-keys", "-t", SESSION, "Enter")
    # Nothing sits between the terminal and the CLI: its exit status is the pane's.
    assert tmux.exit_status(runner_pid) == 0
    assert not _alive(runner_pid)


def _run_v_without_prompt(
    claude_env: dict[str, str], run_runner: RunRunner, workspace: Path
) -> proc.Completed:
    return run_runner(["-v"], {**claude_env, "WORKSPACE_DIR": str(workspace)})


def test_verbosity_without_a_prompt_exits_2(
    fake_api: FakeMessagesAPI, claude_env: dict[str, str], run_runner: RunRunner, tmp_path: Path
) -> None:
    done = _run_v_without_prompt(claude_env, run_runner, tmp_path / "workspace")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "claude-runner: error: -v/-vv need a prompt; interactive mode has no output format"
    )
    assert fake_api.requests == []


def test_verbosity_without_a_prompt_fails_before_any_side_effect(
    claude_env: dict[str, str], run_runner: RunRunner, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    done = _run_v_without_prompt(claude_env, run_runner, workspace)
    assert done.returncode == 2
    # A usage error is the only line, and nothing was created or configured.
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not workspace.exists()
    assert not (Path(claude_env["HOME"]) / ".gitconfig").exists()
