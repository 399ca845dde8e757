"""Interactive mode goes straight to the prompt: pre-answer the CLI's first-run dialogs.

Every container is a first run: the CLI greets a fresh config with onboarding (theme,
login; offline it stops at "Unable to connect to Anthropic services"), then asks to trust
the folder, to use the API key found in the environment, and to accept bypass-permissions
mode. When credentials are given (``ANTHROPIC_API_KEY``, ``ANTHROPIC_AUTH_TOKEN`` or
``CLAUDE_CODE_OAUTH_TOKEN``) and the user has no Claude config yet, ``prepare`` writes the
answers the CLI stores itself (measured against the pinned CLI, see
``tests/test_interactive.py``):

- global config (``$CLAUDE_CONFIG_DIR/.claude.json``, else ``~/.claude.json``):
  ``hasCompletedOnboarding``, ``projects.<workspace>.hasTrustDialogAccepted``,
  ``customApiKeyResponses.approved`` (the key's last 20 characters, as the CLI records
  an approval), ``bypassPermissionsModeAccepted``;
- settings (``settings.json`` in the config directory): ``skipDangerousModePermissionPrompt``.

A config the user mounted or made is never touched: each file is created only when
absent (``O_EXCL``, mode 0600), and nothing is written when the global config exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from claude_runner.pipeline.configdir import user_config_sources

CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
# The CLI identifies an approved key by its last 20 characters.
_KEY_SUFFIX = 20


def first_run_state(env: Mapping[str, str], workspace: Path) -> dict[str, object]:
    """The global config that answers the first-run dialogs (pure)."""
    state: dict[str, object] = {
        "hasCompletedOnboarding": True,
        "bypassPermissionsModeAccepted": True,
        "projects": {str(workspace): {"hasTrustDialogAccepted": True}},
    }
    key = env.get("ANTHROPIC_API_KEY")
    if key:
        state["customApiKeyResponses"] = {"approved": [key[-_KEY_SUFFIX:]], "rejected": []}
    return state


def _create(path: Path, data: dict[str, object]) -> bool:
    """Write ``path`` only if it does not exist; whether it was written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return True


def prepare(env: Mapping[str, str], workspace: Path) -> list[Path]:
    """Pre-answer the dialogs when credentials are given and no config exists; the files
    written (none when there was nothing to do)."""
    if not any(env.get(name) for name in CREDENTIAL_VARS):
        return []
    config_dir, global_config = user_config_sources(env)
    if global_config.exists() or global_config.is_symlink():
        return []
    written: list[Path] = []
    try:
        if _create(global_config, first_run_state(env, workspace.resolve())):
            written.append(global_config)
        settings = config_dir / "settings.json"
        if _create(settings, {"skipDangerousModePermissionPrompt": True}):
            written.append(settings)
    except OSError:
        pass  # an unwritable home: the CLI asks its questions itself, as before
    return written
