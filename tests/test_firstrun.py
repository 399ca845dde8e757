"""Interactive mode goes straight to the prompt on a fresh config: the first-run answers
(unit), and the real CLI under tmux, with a fresh home and with a config the user made."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_runner import firstrun
from tests.conftest import DUMMY_API_KEY
from tests.fakeapi import FakeMessagesAPI, Text
from tests.test_interactive import READY, SESSION, Tmux

KEY = "sk-fake-first-run-key-0123456789abcdefghij"


def test_a_fresh_home_gets_the_answers(tmp_path: Path) -> None:
    home = tmp_path / "h"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    written = firstrun.prepare({"HOME": str(home), "ANTHROPIC_API_KEY": KEY}, workspace)
    assert written == [home / ".claude.json", home / ".claude" / "settings.json"]
    state = json.loads((home / ".claude.json").read_text())
    assert state == {
        "hasCompletedOnboarding": True,
        "bypassPermissionsModeAccepted": True,
        "projects": {str(workspace.resolve()): {"hasTrustDialogAccepted": True}},
        "customApiKeyResponses": {"approved": [KEY[-20:]], "rejected": []},
    }
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert settings == {"skipDangerousModePermissionPrompt": True}
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_oauth_token_needs_no_key_approval_and_config_dir_is_honoured(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    env = {"HOME": str(tmp_path / "h"), "CLAUDE_CONFIG_DIR": str(config),
           "CLAUDE_CODE_OAUTH_TOKEN": "oauth-token-value"}  # fmt: skip
    assert firstrun.prepare(env, tmp_path) == [config / ".claude.json", config / "settings.json"]
    assert "customApiKeyResponses" not in json.loads((config / ".claude.json").read_text())
    assert not (tmp_path / "h").exists()


def test_nothing_is_written_without_credentials_or_over_a_users_config(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert firstrun.prepare({"HOME": str(home)}, tmp_path) == []
    assert not home.exists()
    # A config the user mounted: left exactly as it is, and no settings added beside it.
    home.mkdir()
    mounted = home / ".claude.json"
    mounted.write_text('{"theme": "dark"}')
    assert firstrun.prepare({"HOME": str(home), "ANTHROPIC_API_KEY": KEY}, tmp_path) == []
    assert mounted.read_text() == '{"theme": "dark"}'
    assert not (home / ".claude").exists()
    # A dangling symlink counts as the user's too.
    mounted.unlink()
    mounted.symlink_to(tmp_path / "elsewhere.json")
    assert firstrun.prepare({"HOME": str(home), "ANTHROPIC_API_KEY": KEY}, tmp_path) == []


def test_users_settings_are_kept_when_only_the_global_config_is_missing(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text('{"model": "opus"}')
    written = firstrun.prepare({"HOME": str(home), "ANTHROPIC_API_KEY": KEY}, tmp_path)
    assert written == [home / ".claude.json"]
    assert (home / ".claude" / "settings.json").read_text() == '{"model": "opus"}'


def test_an_unwritable_home_is_not_an_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    home = tmp_path / "h"
    home.mkdir(mode=0o500)
    assert firstrun.prepare({"HOME": str(home), "ANTHROPIC_API_KEY": KEY}, tmp_path) == []


# --- the real CLI in a terminal ------------------------------------------------------------


@pytest.fixture
def term(tmp_path: Path, claude_env: dict[str, str]) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        reason = "tmux not found: run scripts/setup-dev.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = Tmux(tmp_path, {**claude_env, "TERM": "xterm-256color"})
    try:
        yield server
    finally:
        server.kill()


def _start_runner(tmux: Tmux, tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    tmux.env |= {"WORKSPACE_DIR": str(workspace), "SOURCE_WORKSPACE_DIR": str(tmp_path / "none")}
    tmux.env.pop("SOURCE_WORKSPACE_DIR")  # the default source is missing: used as it is
    tmux.start([sys.executable, "-m", "claude_runner"], cwd=tmp_path)
    return workspace


@pytest.mark.cli
def test_a_fresh_home_goes_straight_to_the_prompt(
    fake_api: FakeMessagesAPI,
    claude_env: dict[str, str],
    term: Tmux,
    tmp_path: Path,
) -> None:
    home = Path(claude_env["HOME"])
    assert not (home / ".claude.json").exists()
    fake_api.on("marker-first-run", Text("answer on the first start"))
    _start_runner(term, tmp_path)
    term.wait_for("input prompt", lambda s: READY in s)
    term.cmd("send-keys", "-t", SESSION, "-l", "hello marker-first-run")
    term.wait_for("typed prompt", lambda s: "hello marker-first-run" in s)
    term.cmd("send-keys", "-t", SESSION, "Enter")
    term.wait_for("reply", lambda s: "answer on the first start" in s)
    assert {h.get("x-api-key") for h in fake_api.headers} == {DUMMY_API_KEY}


@pytest.mark.cli
def test_a_users_config_is_left_to_the_cli(
    fake_api: FakeMessagesAPI,
    claude_env: dict[str, str],
    term: Tmux,
    tmp_path: Path,
) -> None:
    """The same start with a config of the user's: the runner adds nothing, so the CLI
    runs its own onboarding (offline it cannot finish it)."""
    home = Path(claude_env["HOME"])
    (home / ".claude.json").write_text('{"theme": "dark"}')
    _start_runner(term, tmp_path)
    screen = term.wait_for("the CLI's onboarding", lambda s: "Welcome to Claude Code" in s)
    assert READY not in screen
    assert not (home / ".claude" / "settings.json").exists()
