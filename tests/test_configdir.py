"""The tasks' config dirs: what is seeded from the user's config, what goes to the
environment instead of the disk, and a scrub that leaves no credential and follows no
link the agent planted. (With the real CLI: tests/test_redact_cli.py.)"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from claude_runner.pipeline.configdir import UserConfig, scrub
from claude_runner.redact import Redactor

KEY = "sk-ant-api03-PRIMARYkeyOfTheUser-0123456789"
ACCESS = "sk-ant-oat01-ACCESStoken-0123456789"
REFRESH = "sk-ant-ort01-REFRESHtoken-0123456789"
LOGIN = {"claudeAiOauth": {"accessToken": ACCESS, "refreshToken": REFRESH, "scopes": ["a:b"]}}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home-of-user"
    (home / ".claude").mkdir(parents=True)
    global_config = {
        "primaryApiKey": KEY,
        "customApiKeyResponses": {"approved": [KEY[-20:]]},
        "hasCompletedOnboarding": True,
        "oauthAccount": {"emailAddress": "a@b.invalid"},
        "projects": {"/somewhere": {"history": ["long"]}},
    }
    (home / ".claude.json").write_text(json.dumps(global_config))
    (home / ".claude" / "settings.json").write_text(
        '{"env": {"NPM_TOKEN": "npm-token-0123456789"}}'
    )
    return home


def test_primary_api_key_goes_to_the_environment_and_never_into_the_slot(
    home: Path, tmp_path: Path
) -> None:
    user = UserConfig.read({"HOME": str(home)})
    assert user.agent_env == {"ANTHROPIC_API_KEY": KEY}
    assert user.oauth is None
    assert user.secrets == {
        "primaryApiKey": KEY,
        "customApiKeyResponses.approved[0]": KEY[-20:],
        "settings.env.NPM_TOKEN": "npm-token-0123456789",
    }
    slot = tmp_path / "slot"
    user.seed_dir(slot)
    assert (slot.stat().st_mode & 0o777) == 0o700
    assert json.loads((slot / ".claude.json").read_text()) == {
        "hasCompletedOnboarding": True,
        "oauthAccount": {"emailAddress": "a@b.invalid"},
    }
    assert not (slot / ".credentials.json").exists()


@pytest.mark.parametrize(
    "variable", ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"]
)
def test_a_credential_in_the_environment_wins_over_the_users_files(
    variable: str, home: Path, tmp_path: Path
) -> None:
    (home / ".claude" / ".credentials.json").write_text(json.dumps(LOGIN))
    user = UserConfig.read({"HOME": str(home), variable: "from-the-environment"})
    assert user.agent_env == {}
    assert user.oauth is None  # not needed: not copied
    user.seed_dir(tmp_path / "slot")
    assert not (tmp_path / "slot" / ".credentials.json").exists()


def test_an_oauth_login_in_effect_is_copied_mode_0600(home: Path, tmp_path: Path) -> None:
    (home / ".claude" / ".credentials.json").write_text(json.dumps(LOGIN))
    user = UserConfig.read({"HOME": str(home)})
    assert user.agent_env == {}  # the CLI prefers the login to primaryApiKey
    assert user.secrets["credentials.claudeAiOauth.accessToken"] == ACCESS
    assert user.secrets["credentials.claudeAiOauth.refreshToken"] == REFRESH
    assert "a:b" not in user.secrets.values()
    user.seed_dir(tmp_path / "slot")
    copied = tmp_path / "slot" / ".credentials.json"
    assert json.loads(copied.read_text()) == LOGIN
    assert (copied.stat().st_mode & 0o777) == 0o600


def slot_after_a_run(root: Path) -> Path:
    """A config dir as the CLI leaves it (see configdir's docstring), with secrets."""
    slot = root / "slot"
    (slot / "backups").mkdir(parents=True)
    (slot / "projects" / "-w" / "s1" / "tool-results").mkdir(parents=True)
    (slot / "plugins" / "store").mkdir(parents=True)
    claude = {"primaryApiKey": KEY, "userID": "u", "nested": {"accessToken": ACCESS}}
    (slot / ".claude.json").write_text(json.dumps(claude))
    (slot / "backups" / ".claude.json.backup.1796069319765").write_text(json.dumps(claude))
    (slot / ".credentials.json").write_text(json.dumps(LOGIN))
    transcript = "".join(
        json.dumps({"type": "user", "content": f"line {i}: key={KEY}\n{REFRESH[:20]}"}) + "\n"
        for i in range(3000)
    )
    (slot / "projects" / "-w" / "s1.jsonl").write_text(transcript)
    (slot / "projects" / "-w" / "s1" / "tool-results" / "x.txt").write_text(f"{ACCESS}\n" * 9)
    (slot / "plugins" / "store" / "p.json").write_text('{"name": "p"}')
    return slot


REDACTOR = Redactor({"a": KEY, "b": ACCESS, "c": REFRESH})


def test_scrub_leaves_no_credential_and_keeps_the_rest(tmp_path: Path) -> None:
    slot = slot_after_a_run(tmp_path)
    scrub(slot, REDACTOR)
    for path in slot.rglob("*"):
        if path.is_file():
            data = path.read_text()
            for secret in (KEY, ACCESS, REFRESH):
                assert secret[:16] not in data, path
            assert "primaryApiKey" not in data, path
            assert "accessToken" not in data, path
    assert not (slot / ".credentials.json").exists()
    assert not (slot / "backups").exists()
    assert json.loads((slot / ".claude.json").read_text()) == {"userID": "u", "nested": {}}
    lines = (slot / "projects" / "-w" / "s1.jsonl").read_text().splitlines()
    assert len(lines) == 3000
    assert json.loads(lines[7]) == {"type": "user", "content": "line 7: key=***\n***"}
    assert (slot / "plugins" / "store" / "p.json").read_text() == '{"name": "p"}'  # untouched
    scrub(slot, REDACTOR)  # idempotent
    scrub(tmp_path / "missing", REDACTOR)


def test_scrub_follows_no_link_the_agent_planted(tmp_path: Path) -> None:
    outside = tmp_path / "users-own"
    outside.mkdir()
    victim = outside / "notes.txt"
    victim.write_text(f"my key {KEY}\n")
    victim_creds = outside / ".credentials.json"
    victim_creds.write_text(json.dumps(LOGIN))
    slot = slot_after_a_run(tmp_path)
    (slot / "projects" / "link.txt").symlink_to(victim)
    (slot / "projects" / "dirlink").symlink_to(outside, target_is_directory=True)
    os.link(victim, slot / "projects" / "hard.txt")
    scrub(slot, REDACTOR)
    assert victim.read_text() == f"my key {KEY}\n"  # neither through the symlink nor the link
    assert victim_creds.exists()
    assert (slot / "projects" / "hard.txt").read_text() == "my key ***\n"  # a new file
    # A whole config dir replaced by a link to the user's real one: left alone.
    moved = tmp_path / "slot-link"
    moved.symlink_to(outside, target_is_directory=True)
    scrub(moved, REDACTOR)
    assert victim_creds.exists()
    assert victim.read_text() == f"my key {KEY}\n"


def test_a_file_that_cannot_be_scrubbed_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot = slot_after_a_run(tmp_path)
    long_name = slot / "projects" / ("n" * 255)  # its rewrite still has a name that fits
    long_name.write_text(f"key={KEY}\n")
    real_replace = os.replace

    def replace(src: str, dst: str, **kw: int) -> None:
        if dst.endswith(".jsonl"):  # a read-only file system under the transcripts
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    problems = scrub(slot, REDACTOR)
    transcript = slot / "projects" / "-w" / "s1.jsonl"
    assert problems == [f"cannot scrub {transcript}: Read-only file system"]
    assert not (slot / ".credentials.json").exists()  # the rest was scrubbed
    assert long_name.read_text() == "key=***\n"
    assert not list(slot.rglob(".scrub-tmp"))
