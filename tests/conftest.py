"""Shared fixtures: per-test isolation, the stand-in Messages API, and the real CLI.

Every test gets its own HOME and an environment without credentials or runner settings
from the developer's shell. ``claude_env`` is a complete environment that runs the real
pinned Claude Code CLI offline against ``fake_api``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from claude_runner import proc
from claude_runner.config import ENV_VARS
from tests.fakeapi import FakeMessagesAPI
from tests.runs import Runner

REPO = Path(__file__).resolve().parents[1]
PINNED_CLI = REPO / "tools" / "claude-code" / "node_modules" / ".bin" / "claude"
# Dummy credentials, distinctive so tests can assert they never leak into output.
DUMMY_API_KEY = "sk-fake-test-key-0123456789abcdefghij"

SECRETS = ("GH_TOKEN", "GITHUB_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY")
# Variables that would point the CLI or the runner at something outside the test.
_FOREIGN = (
    *SECRETS,
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "CLAUDE_CONFIG_DIR",
    "XDG_CONFIG_HOME",
    "IS_SANDBOX",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_CONFIG_GLOBAL",
    *(name for entry in ENV_VARS for name in entry[0].split(" / ")),
)

RunRunner = Callable[..., proc.Completed]


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Own HOME per test (git global config, ~/.claude.json land there) and no
    credentials or runner settings inherited from the shell."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in _FOREIGN:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_api() -> Iterator[FakeMessagesAPI]:
    api = FakeMessagesAPI().start()
    try:
        yield api
    finally:
        api.stop()
    assert not api.live_threads(), f"fake API threads outlived stop(): {api.live_threads()}"
    assert not api.errors, f"the fake API failed while answering: {api.errors}"


@pytest.fixture
def claude_bin() -> str:
    """The pinned real CLI; missing it fails in CI and skips elsewhere."""
    path = os.environ.get("CLAUDE_RUNNER_TEST_CLI") or str(PINNED_CLI)
    if not os.access(path, os.X_OK):
        reason = f"Claude Code CLI not found at {path}: run scripts/setup-dev.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@dataclass(frozen=True)
class PublicCheckout:
    """What tests that run as another user need, where any user can read it."""

    root: Path  # holds src/ and tests/, usable as cwd and PYTHONPATH
    claude_bin: str


@pytest.fixture(scope="session")
def public_checkout() -> Iterator[PublicCheckout]:
    """A world-readable copy of src/, tests/ and the pinned CLI. The checkout may sit
    under a private directory (CI clones into a fresh mkdtemp, mode 0700), where an
    unprivileged user can reach nothing."""
    root = Path(tempfile.mkdtemp(prefix="crt-public-"))
    try:
        root.chmod(0o755)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO / "src", root / "src", ignore=ignore)
        shutil.copytree(REPO / "tests", root / "tests", ignore=ignore)
        (root / "bin").mkdir(mode=0o755)
        cli = root / "bin" / "claude"
        real = PINNED_CLI.resolve()
        if real.exists():
            try:
                os.link(real, cli)  # the binary is ~250 MB: link, copy only across devices
            except OSError:
                shutil.copy2(real, cli)
        for path in (root, *root.rglob("*")):
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        yield PublicCheckout(root=root, claude_bin=str(cli))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def claude_env(fake_api: FakeMessagesAPI, claude_bin: str) -> dict[str, str]:
    """A full environment that runs the real CLI offline against ``fake_api``."""
    env = dict(os.environ)
    env.update(
        {
            "ANTHROPIC_BASE_URL": fake_api.url,
            "ANTHROPIC_API_KEY": DUMMY_API_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            # The CLI refuses --dangerously-skip-permissions as root unless exactly "1".
            "IS_SANDBOX": "1",
            "CLAUDE_BIN": claude_bin,
        }
    )
    # A proxy configured on the machine must not sit between the CLI and the fake.
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, ("127.0.0.1,localhost", env.get(name))))
    return env


def run_claude(
    claude_bin: str,
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path,
    timeout: float = 120.0,
) -> proc.Completed:
    """The raw CLI in print mode, stdin from /dev/null."""
    return proc.run(
        [claude_bin, "--dangerously-skip-permissions", *args], cwd=cwd, env=env, timeout=timeout
    )


def run_runner_process(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None = None,
    timeout: float = 180.0,
) -> proc.Completed:
    """``python -m claude_runner ARGS`` with stdin from /dev/null, output captured.
    Goes through claude_runner.proc, so a timeout kills the whole process group."""
    return proc.run(
        [sys.executable, "-m", "claude_runner", *args], cwd=cwd or REPO, env=env, timeout=timeout
    )


@pytest.fixture
def run_runner() -> RunRunner:
    return run_runner_process


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    """Runs plans in-process with the fault-injection agent."""
    return Runner(tmp_path)


@pytest.fixture
def cli(tmp_path: Path, claude_bin: str, claude_env: dict[str, str]) -> Runner:
    """Runs plans in-process with the real CLI against the stand-in API."""
    r = Runner(tmp_path)
    r.claude_bin = claude_bin
    r.env = claude_env
    return r
