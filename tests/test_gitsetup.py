"""GitHub auth check (with stand-in gh scripts) and git configuration (real git)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from claude_runner.errors import GitError
from claude_runner.gitsetup import check_gh_auth, configure_git
from claude_runner.redact import Redactor

TOKEN = "ghp_SuperSecretToken1234567890"


def _gh(tmp_path: Path, script: str) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    gh = bindir / "gh"
    gh.write_text("#!/bin/sh\n" + script)
    gh.chmod(0o755)
    return {"PATH": f"{bindir}:/usr/bin:/bin", "GH_TOKEN": TOKEN, "HOME": str(tmp_path)}


def test_authenticated_runs_setup_git(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    env = _gh(tmp_path, f'echo "$@" >> {log}\nexit 0\n')
    warnings: list[str] = []
    assert check_gh_auth(env, required=False, redact=Redactor.from_env(env), warn=warnings.append)
    assert log.read_text().splitlines() == ["auth status", "auth setup-git"]
    assert warnings == []


def test_not_authenticated_warns_once_and_redacts(tmp_path: Path) -> None:
    # gh echoes the token it was given in its failure (worst case for a leak).
    env = _gh(tmp_path, f'echo "X Failed to log in using token {TOKEN}" >&2\nexit 1\n')
    warnings: list[str] = []
    ok = check_gh_auth(env, required=False, redact=Redactor.from_env(env), warn=warnings.append)
    assert not ok
    assert len(warnings) == 1
    assert TOKEN not in warnings[0]
    assert "***" in warnings[0]
    assert "will not be authenticated" in warnings[0]


def test_required_auth_is_fatal(tmp_path: Path) -> None:
    env = _gh(tmp_path, "echo 'You are not logged into any GitHub hosts' >&2\nexit 1\n")
    with pytest.raises(GitError, match=r"REQUIRE_GH_AUTH=1") as info:
        check_gh_auth(env, required=True, redact=Redactor.from_env(env), warn=print)
    assert info.value.exit_code == 2


def test_missing_gh_warns(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    warnings: list[str] = []
    assert not check_gh_auth(env, required=False, redact=Redactor([]), warn=warnings.append)
    assert warnings == [
        "gh (GitHub CLI) not found on PATH: gh commands and git over HTTPS to GitHub "
        "will not be authenticated"
    ]


def _git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def test_git_config_is_idempotent(tmp_path: Path) -> None:
    env = _git_env(tmp_path)
    for _ in range(3):
        configure_git(
            env, user_name="Agent A", user_email="a@example.org", workspace=Path("/workspace")
        )
    text = (tmp_path / ".gitconfig").read_text()
    assert text.count("safe.directory") + text.count("directory = /workspace") >= 1

    def get(*args: str) -> list[str]:
        out = subprocess.run(
            ["git", "config", "--global", *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.splitlines()

    assert get("--get-all", "safe.directory") == ["/workspace"]
    assert get("--get-all", "user.name") == ["Agent A"]
    assert get("--get-all", "user.email") == ["a@example.org"]


def test_git_config_changes_identity_on_restart(tmp_path: Path) -> None:
    env = _git_env(tmp_path)
    configure_git(env, user_name="A", user_email="a@x", workspace=tmp_path)
    configure_git(env, user_name="B", user_email="b@x", workspace=tmp_path)
    out = subprocess.run(
        ["git", "config", "--global", "--get-all", "user.name"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines() == ["B"]
