"""One run of the Claude Code CLI for a task: its process, its two pipes, its logs, and
what its stream said.

A task's attempt runs the CLI once, and again (``--resume``) for each round of a verify
gate; a retry is a new attempt. Each run appends to the attempt's ``agent.log`` and
``stderr.log`` (masked, line-aligned) and records what the runner needs from the
stream: the session id (``system``/``init``), the final ``result`` message, and, when
asked (a plan budget, a live progress view), each assistant message's token usage and
tool calls. Only lines that can hold those are parsed (``stream.StreamSink``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_runner import proc
from claude_runner.pipeline import stream
from claude_runner.pipeline.result import USAGE_KEYS
from claude_runner.redact import Redactor

_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


@dataclass
class Outcome:
    """What one CLI run reported."""

    session_id: str | None = None
    result: dict[str, Any] | None = None  # the final result message
    # Per assistant message id, its usage and model (the CLI repeats a message's usage
    # on each of its content blocks: the last one counts).
    usage_by_message: dict[str, tuple[str | None, dict[str, int]]] = field(default_factory=dict)
    tool: str | None = None  # the tool the agent called last
    turns: int = 0  # assistant messages seen
    last_api_retry: dict[str, Any] | None = None  # the CLI's last system/api_retry line


@dataclass(frozen=True)
class Hooks:
    """Where a run's stream goes besides the logs."""

    on_session: Callable[[str], None]
    on_result: Callable[[dict[str, Any]], None]
    on_line: Callable[[bytes], None] | None = None  # verbosity vv: every line
    on_assistant: Callable[[Outcome], None] | None = None  # token usage wanted (a budget)
    on_block: Callable[[bytes], None] | None = None  # whole-line blocks (a live view)


class CliRun:
    """A launched CLI (see the module docstring)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        stdin_file: Path | None,
        log: str,
        stderr_log: str,
        redactor: Redactor,
        hooks: Hooks,
    ) -> None:
        self.outcome = Outcome()
        self.started = time.monotonic()
        self.last_output = self.started
        self.result_at: float | None = None  # when the result message arrived
        self.returncode: int | None = None
        self._hooks = hooks
        self._log_fd = self._err_fd = self.out_fd = self.err_pipe = -1
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.out_fd, self.err_pipe = out_r, err_r
        stdin = os.open(stdin_file, os.O_RDONLY | os.O_CLOEXEC) if stdin_file else -1
        try:
            self._err_fd = os.open(stderr_log, _LOG_FLAGS, 0o644)
            self._log_fd = os.open(log, _LOG_FLAGS, 0o644)
            # The pipes are ours, not Popen's: the scheduler reads the bare descriptors,
            # and Popen's file objects around them cost three system calls per task.
            self.child: subprocess.Popen[bytes] = proc.spawn(
                argv,
                cwd=cwd,
                env=env,
                stdin=stdin if stdin >= 0 else subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
            )
        except BaseException:
            self.close_all()
            raise
        finally:
            for fd in (out_w, err_w, stdin):
                if fd >= 0:
                    os.close(fd)
        self._sink = stream.StreamSink(
            self._write_log,
            on_message=self._on_message,
            on_line=hooks.on_line,
            masker=redactor.stream(),
            want_assistant=hooks.on_assistant is not None,
            on_block=hooks.on_block,
        )
        self._errsink = stream.MaskedLog(self._write_err, masker=redactor.stream())
        self.notes: list[str] = []

    @property
    def read_size(self) -> int:
        return self._sink.read_size

    def _write_log(self, data: bytes) -> None:
        stream.write_all(self._log_fd, data)

    def _write_err(self, data: bytes) -> None:
        if self._err_fd >= 0:
            stream.write_all(self._err_fd, data)

    # --- the stream ------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """A chunk of stdout (raises OSError when the log cannot be written)."""
        self.last_output = time.monotonic()
        self._sink.feed(chunk)

    def feed_stderr(self, chunk: bytes) -> None:
        try:
            self._errsink.feed(chunk)
        except OSError as exc:  # the log cannot be written: stop writing it
            self.notes.append(f"writing the stderr log failed: {exc.strerror}")
            os.close(self._err_fd)
            self._err_fd = -1

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "result":
            self.outcome.result = message
            self.result_at = time.monotonic()
            self._hooks.on_result(message)
        elif kind == "assistant":
            self._on_assistant(message)
        elif message.get("subtype") == "api_retry":
            self.outcome.last_api_retry = message
        else:
            sid = stream.session_id_of_init(message)
            if sid is not None and self.outcome.session_id is None:
                self.outcome.session_id = sid
                self._hooks.on_session(sid)

    def _on_assistant(self, message: dict[str, Any]) -> None:
        body = message.get("message")
        if not isinstance(body, dict):
            return
        out = self.outcome
        usage = body.get("usage")
        msg_id = body.get("id")
        if isinstance(usage, dict) and isinstance(msg_id, str):
            if msg_id not in out.usage_by_message:
                out.turns += 1
            model = body.get("model")
            out.usage_by_message[msg_id] = (
                model if isinstance(model, str) else None,
                {k: int(usage[k]) for k in USAGE_KEYS if isinstance(usage.get(k), int)},
            )
        for block in body.get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                name = block.get("name")
                out.tool = name if isinstance(name, str) else out.tool
        if self._hooks.on_assistant is not None:
            self._hooks.on_assistant(out)

    # --- the end ---------------------------------------------------------------------
    def output_closed(self) -> list[int]:
        """stdout ended: flush and close; the sizes of lines too long to parse."""
        if self.out_fd >= 0:
            os.close(self.out_fd)
            self.out_fd = -1
        try:
            stats = self._sink.close()
        finally:
            if self._log_fd >= 0:
                os.close(self._log_fd)
                self._log_fd = -1
        return list(stats.overlong)

    def stderr_closed(self) -> None:
        if self.err_pipe >= 0:
            os.close(self.err_pipe)
            self.err_pipe = -1
        try:
            if self._err_fd >= 0:
                self._errsink.close()
        except OSError as exc:
            self.notes.append(f"writing the stderr log failed: {exc.strerror}")
        finally:
            if self._err_fd >= 0:
                os.close(self._err_fd)
                self._err_fd = -1

    def close_all(self) -> None:
        """Close every descriptor still open (after a failed start or an internal error)."""
        for name in ("out_fd", "err_pipe", "_log_fd", "_err_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
