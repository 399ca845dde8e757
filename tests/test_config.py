"""Environment variables are read strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_runner import config
from claude_runner.config import Settings, parse_bool
from claude_runner.errors import UsageError


@pytest.mark.parametrize("raw", ["1", "true", "YES", "On", " on "])
def test_truthy(raw: str) -> None:
    assert parse_bool("ENABLE_DIND", raw) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF", ""])
def test_falsy(raw: str) -> None:
    assert parse_bool("ENABLE_DIND", raw) is False


def test_other_values_are_errors() -> None:
    with pytest.raises(UsageError, match=r"ENABLE_DIND='maybe' is not a boolean; use one of"):
        parse_bool("ENABLE_DIND", "maybe")


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As in the image: /workspace exists.
    monkeypatch.setattr(config, "DEFAULT_WORKSPACE", tmp_path)
    s = Settings.from_env({})
    assert s.source_dir == config.DEFAULT_SOURCE
    assert not s.source_dir_explicit
    assert s.workspace_dir == tmp_path
    assert s.claude_bin == "claude"
    assert (s.git_user_name, s.git_user_email) == ("Claude Code Agent", "claude-bot@local.docker")
    assert s.dind_storage_driver == "overlay2"
    assert s.dind_startup_timeout == 45.0
    assert s.pipeline_root == Path("/tmp/agent-pipeline-workspaces")
    assert not s.enable_dind
    assert not s.is_sandbox


def test_outside_the_image_the_workspace_is_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "DEFAULT_WORKSPACE", tmp_path / "no-workspace")
    monkeypatch.setattr(config, "DEFAULT_SOURCE", tmp_path / "no-source")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).workspace_dir == tmp_path
    assert Settings.from_env({"WORKSPACE_DIR": "/w"}).workspace_dir == Path("/w")
    # A source given means the image's layout: the workspace is the image's default.
    given = Settings.from_env({"SOURCE_WORKSPACE_DIR": "/src"})
    assert given.workspace_dir == tmp_path / "no-workspace"


def test_git_identity_fallback_order() -> None:
    env = {"GIT_AUTHOR_NAME": "Author", "GIT_COMMITTER_NAME": "Committer"}
    assert Settings.from_env(env).git_user_name == "Author"
    env["GIT_USER_NAME"] = "User"
    assert Settings.from_env(env).git_user_name == "User"
    assert Settings.from_env({"GIT_COMMITTER_EMAIL": "c@x"}).git_user_email == "c@x"


def test_is_sandbox_must_be_exactly_1() -> None:
    assert Settings.from_env({"IS_SANDBOX": "1"}).is_sandbox
    assert not Settings.from_env({"IS_SANDBOX": "yes"}).is_sandbox


@pytest.mark.parametrize("raw", ["0", "-3", "soon"])
def test_bad_timeout(raw: str) -> None:
    with pytest.raises(UsageError, match="DIND_STARTUP_TIMEOUT_SEC"):
        Settings.from_env({"DIND_STARTUP_TIMEOUT_SEC": raw})
