"""An agent's transcript from its stream-json log: what it said, the tools it called with
their inputs and results, errors, and the final result.

``TranscriptParser.feed`` turns one log line into entries, in the order they happened;
a tool's result is its own entry (``tool_result``), linked to the call by ``tool_id``,
so a follower (``claude-pipeline logs --follow``) can print each as it arrives and the
HTML report can nest results under their calls. Lines that are not JSON are kept as
``raw`` entries: a log is evidence, nothing in it is dropped silently.

``read_window`` reads a log of any size in bounded work: the whole log when it fits the
budget, else its first and last lines up to the budget with a ``gap`` entry between
(the HTML report shows 1,000 tasks' transcripts in a few MB this way).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Whole-file reads below this; larger logs are read as a head and a tail chunk.
_READ_WHOLE = 4 * 1024 * 1024


@dataclass
class Entry:
    """One thing that happened in the agent's session.

    kind: ``text`` (assistant text), ``thinking``, ``tool`` (a call: ``name``,
    ``input``, ``tool_id``), ``tool_result`` (``text``, ``is_error``, ``tool_id``,
    ``name`` of the call when known), ``user`` (a prompt sent in the session),
    ``system`` (session start, API retries), ``error``, ``result`` (the CLI's final
    message), ``raw`` (a line that is not JSON), ``gap`` (bytes not read: ``text``
    says how many).
    """

    kind: str
    text: str = ""
    name: str | None = None
    input: Any = None
    tool_id: str | None = None
    is_error: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                elif block.get("type") == "image":
                    parts.append("[image]")
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    return "" if content is None else json.dumps(content, ensure_ascii=False)


class TranscriptParser:
    """Turns log lines into entries; remembers tool names so results can name them."""

    def __init__(self) -> None:
        self.tools: dict[str, str] = {}

    def feed(self, line: bytes | str) -> list[Entry]:  # noqa: PLR0911 - one per type
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        text = text.rstrip("\r\n")
        if not text.strip():
            return []
        try:
            message = json.loads(text)
        except ValueError:
            return [Entry("raw", text)]
        if not isinstance(message, dict):
            return [Entry("raw", text)]
        kind = message.get("type")
        if kind == "assistant":
            return self._assistant(message)
        if kind == "user":
            return self._user(message)
        if kind == "system":
            return self._system(message)
        if kind == "result":
            return [_result(message)]
        return []  # stream_event and future types: not part of the transcript

    def _assistant(self, message: dict[str, Any]) -> list[Entry]:
        body = message.get("message")
        entries: list[Entry] = []
        if isinstance(message.get("error"), str):
            entries.append(Entry("error", f"assistant error: {message['error']}"))
        if not isinstance(body, dict):
            return entries
        for block in body.get("content") or []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and str(block.get("text", "")).strip():
                entries.append(Entry("text", str(block["text"])))
            elif btype == "thinking" and str(block.get("thinking", "")).strip():
                entries.append(Entry("thinking", str(block["thinking"])))
            elif btype in ("tool_use", "server_tool_use"):
                name = str(block.get("name", "?"))
                tool_id = block.get("id") if isinstance(block.get("id"), str) else None
                if tool_id:
                    self.tools[tool_id] = name
                entries.append(Entry("tool", name=name, input=block.get("input"), tool_id=tool_id))
        return entries

    def _user(self, message: dict[str, Any]) -> list[Entry]:
        body = message.get("message")
        if not isinstance(body, dict):
            return []
        content = body.get("content")
        if isinstance(content, str):
            return [Entry("user", content)] if content.strip() else []
        entries: list[Entry] = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result":
                tool_id = block.get("tool_use_id")
                tool_id = tool_id if isinstance(tool_id, str) else None
                entries.append(
                    Entry(
                        "tool_result",
                        _content_text(block.get("content")),
                        name=self.tools.get(tool_id or ""),
                        tool_id=tool_id,
                        is_error=block.get("is_error") is True,
                    )
                )
            elif block.get("type") == "text" and str(block.get("text", "")).strip():
                entries.append(Entry("user", str(block["text"])))
        return entries

    def _system(self, message: dict[str, Any]) -> list[Entry]:
        subtype = message.get("subtype")
        if subtype == "init":
            model, cwd = message.get("model"), message.get("cwd")
            tools = message.get("tools")
            count = len(tools) if isinstance(tools, list) else 0
            return [
                Entry(
                    "system",
                    f"session started: model {model}, {count} tools, in {cwd}",
                    meta={"model": model, "session_id": message.get("session_id")},
                )
            ]
        if subtype == "api_retry":
            attempt = message.get("attempt")
            error = message.get("error") or message.get("error_status") or "?"
            delay = message.get("retry_delay_ms")
            wait = f", next in {delay / 1000:.1f}s" if isinstance(delay, int | float) else ""
            return [Entry("system", f"API retry {attempt}: {error}{wait}")]
        if subtype in ("status", "compact_boundary", "task_started", "task_notification"):
            return [Entry("system", str(subtype))]
        return []


def _result(message: dict[str, Any]) -> Entry:
    text = message.get("result")
    if not isinstance(text, str):
        errors = message.get("errors")
        text = "; ".join(map(str, errors)) if isinstance(errors, list) else ""
    cost = message.get("total_cost_usd")
    return Entry(
        "result",
        text,
        is_error=message.get("is_error") is True,
        meta={
            "subtype": message.get("subtype"),
            "num_turns": message.get("num_turns"),
            "cost_usd": cost if isinstance(cost, int | float) else None,
            "duration_ms": message.get("duration_ms"),
        },
    )


def parse_lines(lines: Iterable[bytes]) -> list[Entry]:
    parser = TranscriptParser()
    entries: list[Entry] = []
    for line in lines:
        entries.extend(parser.feed(line))
    return entries


@dataclass
class Window:
    """A bounded read of a log: its entries and how much of it was left out."""

    entries: list[Entry]
    size: int
    omitted: int  # bytes between the head and the tail that were not read


def read_window(path: Path, budget: int) -> Window:
    """The transcript of ``path`` within about ``budget`` bytes of log: all of it when it
    fits, else whole lines from its start and its end (a ``gap`` entry between)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(0)
            if size <= budget:
                return Window(parse_lines(f.read().split(b"\n")), size, 0)
            if size <= _READ_WHOLE:
                data = f.read()
                head, tail = data[: budget // 2], data[size - budget // 2 :]
            else:
                head = f.read(budget // 2)
                f.seek(size - budget // 2)
                tail = f.read()
    except OSError:
        return Window([], 0, 0)
    # Cut at whole lines: drop the partial last line of the head and first of the tail.
    head_lines = head.split(b"\n")[:-1]
    tail_lines = tail.split(b"\n")[1:]
    kept = sum(len(x) + 1 for x in head_lines) + sum(len(x) + 1 for x in tail_lines)
    omitted = max(0, size - kept)
    parser = TranscriptParser()
    entries = [e for line in head_lines for e in parser.feed(line)]
    entries.append(Entry("gap", f"{omitted} bytes of the log not shown"))
    entries.extend(e for line in tail_lines for e in parser.feed(line))
    return Window(entries, size, omitted)
