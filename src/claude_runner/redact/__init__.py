"""The one redaction policy: what the runner masks in everything it prints or writes.

Masked (each replaced by ``***``):

- the values of known secrets, by NAME: ``SECRET_ENV_VARS``, every other environment
  variable whose name says it holds a secret (``..._TOKEN``, ``..._SECRET``,
  ``..._PASSWORD``, ``..._API_KEY``, ...) and whose value has at least 16 characters,
  and values added at run time (``with_secrets``: credentials read from the user's
  Claude config, plan values). Each value also as written inside a JSON string,
  percent-encoded and base64-encoded, and its start and end pieces down to half its
  length (at most 16 bytes): see ``forms.py``;
- token shapes with a documented prefix, whatever their value (``shapes.py``).

APIs: a string API (``__call__``/``mask_text``: messages, events), a bytes API
(``mask_bytes``), a streaming API (``stream()``: ``feed(chunk)`` returns the bytes safe to
write now, ``close()`` the rest, and the output equals the bytes API's result for any
chunking: task logs, stderr logs, single-prompt output) and ``names_in`` (which known
secrets appear, for reporting secrets an agent wrote into its changes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence

from claude_runner.redact.engine import Engine, StreamMasker, mask, names_in
from claude_runner.redact.forms import MIN_SECRET
from claude_runner.redact.shapes import SHAPES, Shape

__all__ = ["MASK", "SECRET_ENV_VARS", "Redactor", "StreamMasker", "secrets_from_env"]

SECRET_ENV_VARS: tuple[str, ...] = (
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
)
MASK = "***"
# Other variables a CI job passes to the agent that hold credentials (NPM_TOKEN,
# AWS_SECRET_ACCESS_KEY, ACTIONS_ID_TOKEN_REQUEST_TOKEN, ...). Values under 16
# characters are left out: a "true" or a port number must not be masked everywhere.
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|SECRET_?KEY|PRIVATE_?KEY)$",
    re.IGNORECASE,
)
_NAMED_MIN = 16
_CHUNK = 1024 * 1024


def secrets_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """NAME -> value of the secrets in ``env`` (see the module docstring)."""
    found = {name: env[name] for name in SECRET_ENV_VARS if env.get(name)}
    for name, value in env.items():
        if name not in found and len(value) >= _NAMED_MIN and _SECRET_NAME.search(name):
            found[name] = value
    return found


class Redactor:
    """The policy for one set of secrets (immutable; thread-safe).

    ``secrets``: NAME -> value, or bare values (named ``secret``). Values shorter than
    4 characters are ignored: masking them would mask ordinary words."""

    def __init__(
        self,
        secrets: Mapping[str, str] | Iterable[str] = (),
        *,
        shapes: Sequence[Shape] = SHAPES,
    ) -> None:
        pairs = (
            secrets.items() if isinstance(secrets, Mapping) else (("secret", v) for v in secrets)
        )
        self._pairs = tuple((name, value) for name, value in pairs if len(value) >= MIN_SECRET)
        self._shapes = tuple(shapes)
        self._engine = Engine(self._pairs, self._shapes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Redactor:
        return cls(secrets_from_env(os.environ if env is None else env))

    def with_secrets(self, more: Mapping[str, str]) -> Redactor:
        """This policy plus ``more`` (NAME -> value), e.g. credentials from the user's
        Claude config or values a plan derives from the environment."""
        merged = Redactor((), shapes=self._shapes)
        merged._pairs = self._pairs + tuple((n, v) for n, v in more.items() if len(v) >= MIN_SECRET)
        merged._engine = Engine(merged._pairs, merged._shapes)
        return merged

    @property
    def known(self) -> dict[str, str]:
        """NAME -> value of the known secrets (the last value of a repeated NAME)."""
        return dict(self._pairs)

    def __call__(self, text: str) -> str:
        return self.mask_text(text)

    def mask_text(self, text: str) -> str:
        """``text`` with secrets masked."""
        data = text.encode("utf-8", "surrogatepass")
        masked = mask(self._engine, data)
        if masked is data:
            return text
        try:
            return masked.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:  # a mask cut a non-ASCII secret's character in two
            return masked.decode("utf-8", "replace")

    def mask_bytes(self, data: bytes) -> bytes:
        """``data`` with secrets masked (``data`` itself when it holds none)."""
        return mask(self._engine, data)

    def stream(self) -> StreamMasker:
        """A masker for one byte stream (see ``StreamMasker``)."""
        return StreamMasker(self._engine)

    def names_in(self, data: str | bytes) -> list[str]:
        """The NAMEs of the known secrets that appear in ``data`` (a start or end piece
        long enough to be masked counts), sorted. Token shapes are not names: they are
        masked, not reported."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        return sorted(names_in(self._engine, data))

    def names_in_file(self, path: str | os.PathLike[str]) -> list[str]:
        """``names_in`` of a file of any size (a patch), read in chunks."""
        masker = self.stream()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                masker.feed(chunk)
        masker.close()
        return sorted(masker.names)
