"""GitHub authentication check and global git configuration (start-up steps 2 and 3)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from claude_runner import proc
from claude_runner.errors import GitError
from claude_runner.redact import Redactor

GH_TIMEOUT = 20.0


def check_gh_auth(
    env: Mapping[str, str],
    *,
    required: bool,
    redact: Redactor,
    warn: Callable[[str], None],
) -> bool:
    """Run ``gh auth status`` then ``gh auth setup-git``. Returns whether gh is ready.

    Without gh or its authentication the run goes on with one warning that says what
    will not work, unless ``required`` (REQUIRE_GH_AUTH=1) makes it fatal.
    """
    consequence = "gh commands and git over HTTPS to GitHub will not be authenticated"
    try:
        status = proc.run(["gh", "auth", "status"], env=env, timeout=GH_TIMEOUT)
    except FileNotFoundError:
        return _fail(f"gh (GitHub CLI) not found on PATH: {consequence}", required, warn)
    except subprocess.TimeoutExpired:
        return _fail(
            f"`gh auth status` timed out after {GH_TIMEOUT:.0f}s: {consequence}", required, warn
        )
    if status.returncode != 0:
        detail = _last_line(redact(status.stderr or status.stdout))
        return _fail(
            f"gh is not authenticated ({detail}): {consequence}; set GH_TOKEN or GITHUB_TOKEN",
            required,
            warn,
        )
    setup = proc.run(["gh", "auth", "setup-git"], env=env, timeout=GH_TIMEOUT)
    if setup.returncode != 0:
        detail = _last_line(redact(setup.stderr or setup.stdout))
        return _fail(
            f"`gh auth setup-git` failed ({detail}): git will not use gh's credentials",
            required,
            warn,
        )
    return True


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _fail(message: str, required: bool, warn: Callable[[str], None]) -> bool:
    if required:
        raise GitError(message + " (REQUIRE_GH_AUTH=1)")
    warn(message)
    return False


def configure_git(
    env: Mapping[str, str], *, user_name: str, user_email: str, workspace: Path
) -> None:
    """Global identity and safe.directory; running it again changes nothing."""
    _git(env, "config", "--global", "user.name", user_name)
    _git(env, "config", "--global", "user.email", user_email)
    current = _git(env, "config", "--global", "--get-all", "safe.directory", check=False)
    if str(workspace) not in current.splitlines():
        _git(env, "config", "--global", "--add", "safe.directory", str(workspace))


def _git(env: Mapping[str, str], *args: str, check: bool = True) -> str:
    try:
        done = proc.run(["git", *args], env=env, timeout=30.0)
    except FileNotFoundError as exc:
        raise GitError("git not found on PATH; install git") from exc
    if check and done.returncode != 0:
        raise GitError(f"`git {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout
