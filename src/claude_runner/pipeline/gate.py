"""The verify gate: a task's ``check`` command, and what the agent is told when it fails.

After the agent's result the runner runs ``bash -c <check.run>`` in the task's working
directory, with the agent's environment (so the task's marker reaches whatever it
starts, and the orphan sweep finds it), under ``check.timeout`` and the task's own stop.
Output goes to ``check-<n>.log``, masked; its tail goes back to the agent, in the same
session, when the check fails and runs are left. This is what makes an unattended
agent's "done" mean "the checks pass".
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from claude_runner import proc
from claude_runner.pipeline import stream
from claude_runner.redact import Redactor

TAIL_BYTES = 8 * 1024


@dataclass(frozen=True)
class CheckRun:
    """One run of the check."""

    number: int
    exit_code: int | None  # None: it timed out or was stopped
    duration_s: float
    tail: str
    log: str
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def run_check(
    command: str,
    *,
    number: int,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    timeout: float | None,
    stop: threading.Event,
    redactor: Redactor,
) -> CheckRun:
    """Run the check once; its masked output in ``log``."""
    started = time.monotonic()
    tail = bytearray()
    with log.open("wb") as f:
        masked = stream.MaskedLog(f.write, masker=redactor.stream())

        def output(chunk: bytes) -> None:
            masked.feed(chunk)
            tail.extend(chunk)
            del tail[:-TAIL_BYTES]

        exit_code: int | None = None
        timed_out = False
        try:
            exit_code = proc.run_streaming(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                timeout=timeout,
                cancel=stop,
                on_output=output,
            )
        except subprocess.TimeoutExpired:
            timed_out = True
            masked.feed(f"\n[claude-runner: the check timed out after {timeout:g} s]\n".encode())
        except proc.Cancelled:
            masked.feed(b"\n[claude-runner: the check was stopped]\n")
        masked.close()
    # The tail may start inside a secret: the end pieces of known values are masked too.
    text = redactor(bytes(tail).decode("utf-8", "replace"))
    return CheckRun(
        number=number,
        exit_code=exit_code,
        duration_s=round(time.monotonic() - started, 3),
        tail=text,
        log=str(log),
        timed_out=timed_out,
    )


def feedback_prompt(command: str, check: CheckRun, *, runs_left: int) -> str:
    """What the agent is told, in its session, when the check failed."""
    how = (
        f"timed out after {check.duration_s:g} s"
        if check.timed_out
        else f"exited with code {check.exit_code}"
    )
    return (
        f"The verification command `{command}` {how}, so the task is not done yet. "
        f"Fix the problem; the command runs again when you finish "
        f"({runs_left} more run{'s' if runs_left != 1 else ''} allowed).\n\n"
        f"The last part of its output:\n```\n{check.tail.strip()}\n```"
    )
