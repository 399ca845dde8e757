"""A task's transcript for a terminal (``claude-pipeline logs``), and following a running one.

Each entry becomes a few lines: assistant text as is, a tool call as ``▶ Name  input``,
its result indented under ``◀`` (the first ``RESULT_LINES`` lines), errors and the final
result marked. Colours only on a terminal, never with ``NO_COLOR`` or ``TERM=dumb``.

``follow`` prints the log as it grows until the task's ``task_finish`` is in
``events.jsonl`` (or the run's ``result.json`` exists), then prints what is left. A
retry moves the log aside and starts a new one: a new file at the same path is read
from its start, under an ``attempt N`` heading.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from claude_runner.reports.transcript import Entry, TranscriptParser

RESULT_LINES = 12
POLL = 0.2

_STYLES = {
    "tool": "\x1b[1;36m",
    "result": "\x1b[2m",
    "error": "\x1b[31m",
    "ok": "\x1b[1;32m",
    "bad": "\x1b[1;31m",
    "dim": "\x1b[2m",
}
_RESET = "\x1b[0m"


def use_colour(stream: TextIO, env: Mapping[str, str]) -> bool:
    if env.get("NO_COLOR") or env.get("TERM", "") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _short(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("command", "file_path", "path", "pattern", "url", "query", "description"):
            if isinstance(value.get(key), str):
                return " ".join(value[key].split())[:200]
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:199] + "…"


class TerminalRenderer:
    """Entries -> text lines for a terminal."""

    def __init__(self, *, colour: bool, redact: Callable[[str], str]) -> None:
        self.colour = colour
        self.redact = redact

    def paint(self, style: str, text: str) -> str:
        return f"{_STYLES[style]}{text}{_RESET}" if self.colour else text

    def render(self, e: Entry) -> str:
        text = self.redact(e.text)
        if e.kind == "tool":
            return f"{self.paint('tool', f'▶ {e.name}')}  {self.redact(_short(e.input))}\n"
        if e.kind == "tool_result":
            return self._tool_result(e, text)
        if e.kind == "result":
            return self._result(e, text)
        style, prefix = _SIMPLE.get(e.kind, (None, ""))
        line = prefix + text
        return (self.paint(style, line) if style else line) + "\n"

    def _tool_result(self, e: Entry, text: str) -> str:
        lines = text.splitlines() or [""]
        shown = lines[:RESULT_LINES]
        if len(lines) > len(shown):
            shown.append(f"… {len(lines) - len(shown)} more lines")
        body = "\n".join(("  ◀ " if n == 0 else "    ") + line for n, line in enumerate(shown))
        return self.paint("error" if e.is_error else "result", body) + "\n"

    def _result(self, e: Entry, text: str) -> str:
        m = e.meta
        cost = m.get("cost_usd")
        money = f", ${cost:.4f}" if isinstance(cost, int | float) else ""
        verdict = "error result" if e.is_error else "result"
        label = f"■ {verdict} ({m.get('subtype')}, {m.get('num_turns')} turns{money})"
        return (
            self.paint("bad" if e.is_error else "ok", label) + ("\n" + text if text else "") + "\n"
        )


# kind -> (style or None, prefix) for the entries shown as one styled line
_SIMPLE: dict[str, tuple[str | None, str]] = {
    "text": (None, ""),
    "raw": (None, ""),
    "thinking": ("dim", "(thinking) "),
    "user": ("dim", "» "),
    "system": ("dim", "· "),
    "error": ("error", "! "),
    "gap": ("dim", "… "),
}


def print_log(path: Path, out: TextIO, renderer: TerminalRenderer) -> None:
    """The whole transcript of ``path``, streamed line by line."""
    parser = TranscriptParser()
    with path.open("rb") as f:
        for line in f:
            for e in parser.feed(line):
                out.write(renderer.render(e))
    out.flush()


def _finished(run_dir: Path, stage_id: str, task_id: str, offset: int) -> tuple[bool, int]:
    """Whether events.jsonl (read from ``offset``) has the task's task_finish; the new
    offset. Only whole lines are consumed."""
    if (run_dir / "result.json").exists():
        return True, offset
    try:
        with (run_dir / "events.jsonl").open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return False, offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].split(b"\n"):
        if b"task_finish" not in line:
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(e, dict)
            and e.get("type") == "pipeline_event.task_finish"
            and e.get("stage_id") == stage_id
            and e.get("task_id") == task_id
        ):
            return True, offset + end
    return False, offset + end


class _Follower:
    """The state of ``follow``: the open log, the unfinished line, the attempt number."""

    def __init__(self, log: Path, out: TextIO, renderer: TerminalRenderer) -> None:
        self.log = log
        self.out = out
        self.renderer = renderer
        self.parser = TranscriptParser()
        self.handle: BinaryIO | None = None
        self.inode = 0
        self.pending = b""
        self.attempt = 1

    def emit(self, lines: list[bytes]) -> None:
        for line in lines:
            for e in self.parser.feed(line):
                self.out.write(self.renderer.render(e))
        self.out.flush()

    def step(self) -> None:
        """Print what the log gained; switch to a new log that replaced it."""
        if self.handle is None:
            try:
                self.handle = self.log.open("rb")
            except FileNotFoundError:
                return
            self.inode = os.fstat(self.handle.fileno()).st_ino
        chunk = self.handle.read()
        if chunk:
            lines = (self.pending + chunk).split(b"\n")
            self.pending = lines.pop()
            self.emit(lines)
            return
        try:
            replaced = os.stat(self.log).st_ino != self.inode
        except FileNotFoundError:
            replaced = True
        if replaced:  # a retry moved the log aside (all of it was read): the next attempt
            self.close()
            self.parser = TranscriptParser()
            self.attempt += 1
            self.out.write(self.renderer.paint("dim", f"── attempt {self.attempt}") + "\n")

    def close(self) -> None:
        if self.pending:
            self.emit([self.pending])
        self.pending = b""
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def follow(
    run_dir: Path,
    stage_id: str,
    task_id: str,
    log: Path,
    *,
    out: TextIO,
    renderer: TerminalRenderer,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print ``log`` as it grows until the task finishes (see the module docstring)."""
    follower = _Follower(log, out, renderer)
    offset = 0
    while True:
        done, offset = _finished(run_dir, stage_id, task_id, offset)
        follower.step()
        if done:
            follower.step()  # what was written before task_finish
            break
        sleep(POLL)
    follower.close()
