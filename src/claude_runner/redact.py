"""Keep secrets out of everything the runner prints or writes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

SECRET_ENV_VARS: tuple[str, ...] = (
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
)
MASK = "***"
# Token shapes worth masking even when we were not told the value (gh prints prefixes).
_TOKEN_PATTERNS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{8,}|github_pat_[A-Za-z0-9_]{8,}|sk-ant-[A-Za-z0-9_\-]{8,})"
)


class Redactor:
    """Replaces known secret values and token-shaped strings with ``***``."""

    def __init__(self, secrets: Iterable[str], names: Mapping[str, str] | None = None) -> None:
        # Longest first so a secret that contains another is masked whole; skip tiny
        # values that would mask ordinary words.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._named = {n: v for n, v in (names or {}).items() if len(v) >= 4}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Redactor:
        env = os.environ if env is None else env
        named = {name: env[name] for name in SECRET_ENV_VARS if env.get(name)}
        return cls(named.values(), named)

    def names_in(self, data: bytes) -> list[str]:
        """The names of the secrets whose values appear in ``data``."""
        return sorted(n for n, v in self._named.items() if v.encode() in data)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        # Substring tests are ~10x cheaper than the regex scan, and most text has neither.
        if "gh" in text or "github_pat_" in text or "sk-ant-" in text:
            text = _TOKEN_PATTERNS.sub(MASK, text)
        return text
