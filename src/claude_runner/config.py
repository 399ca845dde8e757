"""Environment variables the runner reads, parsed once into a frozen ``Settings``.

``ENV_VARS`` is the single list: ``--help`` prints it, the README mirrors it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from claude_runner.errors import UsageError

# (name, default shown in --help, meaning)
ENV_VARS: tuple[tuple[str, str, str], ...] = (
    ("SOURCE_WORKSPACE_DIR", "/workspace-source", "tree copied into WORKSPACE_DIR at start"),
    (
        "WORKSPACE_DIR",
        "/workspace",
        "writable workspace the agent works in (when neither /workspace nor "
        "/workspace-source exists and neither variable is set: the current directory)",
    ),
    (
        "WORKSPACE_EXISTING",
        "keep",
        "non-empty WORKSPACE_DIR at start: keep (no copy), fail (exit 2), "
        "replace (move it aside to WORKSPACE_DIR.prev-<time>, then copy)",
    ),
    (
        "CLAUDE_BIN",
        "claude",
        "Claude Code CLI binary (name on PATH or path); unset and no claude on PATH: "
        "the CLI this checkout pins (tools/claude-code)",
    ),
    ("IS_SANDBOX", "", "must be exactly 1 to run the CLI as root"),
    ("REQUIRE_GH_AUTH", "0", "1: a missing or failed `gh auth` is fatal (exit 2)"),
    ("GH_TOKEN / GITHUB_TOKEN", "", "GitHub token used by gh and git (never printed)"),
    ("CLAUDE_CODE_OAUTH_TOKEN", "", "Claude credentials, passed to the CLI (never printed)"),
    ("ANTHROPIC_API_KEY", "", "Claude credentials, passed to the CLI (never printed)"),
    (
        "GIT_USER_NAME",
        "Claude Code Agent",
        "git user.name (else GIT_AUTHOR_NAME, GIT_COMMITTER_NAME)",
    ),
    (
        "GIT_USER_EMAIL",
        "claude-bot@local.docker",
        "git user.email (else GIT_AUTHOR_EMAIL, GIT_COMMITTER_EMAIL)",
    ),
    ("ENABLE_DIND", "0", "1/true/yes/on: start dockerd inside the container"),
    ("DIND_STORAGE_DRIVER", "overlay2", "first storage driver tried (vfs is the fallback)"),
    ("DIND_STARTUP_TIMEOUT_SEC", "45", "seconds to wait for dockerd to answer _ping"),
    ("DIND_LOG_FILE", "/tmp/dockerd.log", "where dockerd's output is appended"),  # noqa: S108
    (
        "PIPELINE_WORKSPACES_ROOT",
        "/tmp/agent-pipeline-workspaces",  # noqa: S108
        "where worktree/snapshot_ro task workspaces and run directories go",
    ),
    (
        "PIPELINE_WORKSPACE_METHOD",
        "auto",
        "how worktree/snapshot_ro workspaces are made: auto, overlay, reflink, copy",
    ),
    ("PIPELINE_PRICE_TABLE", "", "JSON file of token prices replacing the built-in ones"),
    ("GITHUB_STEP_SUMMARY", "", "when set, each pipeline run's Markdown report is appended"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "", "when set, OpenTelemetry traces of pipeline runs"),
)

_TRUTHY = frozenset({"1", "true", "yes", "on"})
_FALSY = frozenset({"0", "false", "no", "off", ""})


def parse_bool(name: str, raw: str | None, *, default: bool = False) -> bool:
    """Read a boolean variable strictly: anything but the known spellings is an error."""
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUTHY:
        return True
    if value in _FALSY:
        return False
    raise UsageError(f"{name}={raw!r} is not a boolean; use one of 1/true/yes/on or 0/false/no/off")


def _first(env: Mapping[str, str], names: tuple[str, ...], fallback: str) -> str:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return fallback


def _positive_float(name: str, raw: str | None, default: float) -> float:
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{name}={raw!r} must be a positive number of seconds")
    return value


WORKSPACE_EXISTING_CHOICES = ("keep", "fail", "replace")


def _choice(name: str, raw: str | None, choices: tuple[str, ...]) -> str:
    """The first choice is the default; anything outside ``choices`` is an error."""
    value = (raw or "").strip().lower() or choices[0]
    if value not in choices:
        raise UsageError(f"{name}={raw!r} is not valid; use one of {', '.join(choices)}")
    return value


DEFAULT_SOURCE = Path("/workspace-source")
DEFAULT_WORKSPACE = Path("/workspace")


def _workspace_dir(workspace: str, source: str) -> Path:
    """``WORKSPACE_DIR``; by default ``/workspace`` as in the image, but outside it (no
    ``/workspace`` nor ``/workspace-source``, neither variable set) the current directory:
    what someone running the runner from a checkout means."""
    if workspace:
        return Path(workspace)
    if source or DEFAULT_WORKSPACE.exists() or DEFAULT_SOURCE.exists():
        return DEFAULT_WORKSPACE
    return Path.cwd()


@dataclass(frozen=True)
class Settings:
    """Everything the runner takes from its environment."""

    source_dir: Path
    source_dir_explicit: bool
    workspace_dir: Path
    claude_bin: str
    is_sandbox: bool
    require_gh_auth: bool
    git_user_name: str
    git_user_email: str
    enable_dind: bool
    dind_storage_driver: str
    dind_startup_timeout: float
    pipeline_root: Path
    dind_log_file: Path = Path("/tmp/dockerd.log")  # noqa: S108
    workspace_existing: str = "keep"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        source = env.get("SOURCE_WORKSPACE_DIR", "")
        return cls(
            source_dir=Path(source or DEFAULT_SOURCE),
            source_dir_explicit=bool(source),
            workspace_dir=_workspace_dir(env.get("WORKSPACE_DIR", ""), source),
            claude_bin=env.get("CLAUDE_BIN") or "claude",
            is_sandbox=env.get("IS_SANDBOX") == "1",
            require_gh_auth=parse_bool("REQUIRE_GH_AUTH", env.get("REQUIRE_GH_AUTH")),
            git_user_name=_first(
                env, ("GIT_USER_NAME", "GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"), "Claude Code Agent"
            ),
            git_user_email=_first(
                env,
                ("GIT_USER_EMAIL", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"),
                "claude-bot@local.docker",
            ),
            enable_dind=parse_bool("ENABLE_DIND", env.get("ENABLE_DIND")),
            dind_storage_driver=env.get("DIND_STORAGE_DRIVER") or "overlay2",
            dind_startup_timeout=_positive_float(
                "DIND_STARTUP_TIMEOUT_SEC", env.get("DIND_STARTUP_TIMEOUT_SEC"), 45.0
            ),
            pipeline_root=Path(
                env.get("PIPELINE_WORKSPACES_ROOT") or "/tmp/agent-pipeline-workspaces"  # noqa: S108
            ),
            dind_log_file=Path(env.get("DIND_LOG_FILE") or "/tmp/dockerd.log"),  # noqa: S108
            workspace_existing=_choice(
                "WORKSPACE_EXISTING", env.get("WORKSPACE_EXISTING"), WORKSPACE_EXISTING_CHOICES
            ),
        )
