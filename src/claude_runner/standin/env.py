"""The environment that points an agent (the real CLI) at a running stand-in API.

Everything that could send the agent elsewhere or hand it a real credential is removed:
the rehearsing agent gets only a dummy key, which the stand-in uses to route its requests
to the task attempt's script.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Final

# Credentials and settings that would authenticate or route the CLI elsewhere.
REMOVED: Final = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_FOUNDRY_BASE_URL",
    "ANTHROPIC_FOUNDRY_API_KEY",
    "AWS_BEARER_TOKEN_BEDROCK",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "GH_TOKEN",
    "GITHUB_TOKEN",
)
_LOCAL = "127.0.0.1,localhost"


def new_api_key() -> str:
    """A fresh dummy key: one per task attempt, so the stand-in can tell them apart."""
    return f"sk-rehearsal-{secrets.token_hex(12)}"


def agent_env(
    base: Mapping[str, str],
    *,
    url: str,
    api_key: str,
    max_retries: int | None = 0,
    remove: Iterable[str] = (),
) -> dict[str, str]:
    """``base`` with the stand-in at ``url`` as the API and ``api_key`` as the only
    credential; ``REMOVED`` and ``remove`` (the runner's own secret names) dropped.
    ``max_retries`` sets ``CLAUDE_CODE_MAX_RETRIES`` (None keeps ``base``'s): 0 makes a
    scripted error end the attempt at once instead of after the CLI's own ~10 retries."""
    dropped = {*REMOVED, *remove}
    env = {k: v for k, v in base.items() if k not in dropped}
    env.update(
        ANTHROPIC_BASE_URL=url,
        ANTHROPIC_API_KEY=api_key,
        # Without it the CLI also tries to reach the vendor's hosts.
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    # A proxy configured on the machine must not sit between the CLI and the stand-in.
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, (_LOCAL, base.get(name))))
    return env
