"""Runner diagnostics: one-line messages on stderr, secrets redacted.

stdout belongs to the agent (single-prompt mode) or to the event stream (pipeline
mode), so everything the runner itself says goes to stderr.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from claude_runner.redact import Redactor

LOGGER_NAME = "claude_runner"
log = logging.getLogger(LOGGER_NAME)


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("claude-runner: %(levelname_lower)s%(message)s")
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        record.levelname_lower = "" if level == "info" else f"{level}: "
        return self._redact(super().format(record))


def setup(*, debug: bool, redactor: Redactor, stream: TextIO | None = None) -> None:
    """Send the runner's messages to stderr (or ``stream``: a live view's, which prints
    them above its table); idempotent (tests call main() repeatedly)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_RedactingFormatter(redactor))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def notice(message: str) -> None:
    log.info(message)
