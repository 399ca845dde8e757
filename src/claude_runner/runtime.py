"""What the runner learned at start-up, read once and passed down to every mode.

``app`` builds one ``Runtime`` from the command line and the environment; nothing below it
reads ``os.environ`` or parses settings again (a variable could otherwise be read two ways,
and a bad value fail in one mode and not another).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from claude_runner.config import Settings
from claude_runner.redact import Redactor

if TYPE_CHECKING:
    from claude_runner.rehearsal import Rehearsal


@dataclass(frozen=True)
class Runtime:
    """The runner's settings, environment and secrets, and the run's cancel flag."""

    settings: Settings
    env: Mapping[str, str]  # the runner's environment; agents start from it
    redactor: Redactor
    claude_bin: str
    cancel: threading.Event = field(default_factory=threading.Event)
    rehearsal: Rehearsal | None = None  # --rehearse: the stand-in model agents talk to

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        claude_bin: str,
        cancel: threading.Event | None = None,
        rehearsal: Rehearsal | None = None,
    ) -> Runtime:
        """Parse ``env`` once (``Settings``, the secrets to mask)."""
        return cls(
            settings=Settings.from_env(env),
            env=dict(env),
            redactor=Redactor.from_env(env),
            claude_bin=claude_bin,
            cancel=cancel or threading.Event(),
            rehearsal=rehearsal,
        )

    def with_env(self, extra: Mapping[str, str]) -> Runtime:
        """The same runtime with ``extra`` added to the agents' environment (the
        Docker-in-Docker daemon's DOCKER_HOST)."""
        return dataclasses.replace(self, env={**self.env, **extra})
