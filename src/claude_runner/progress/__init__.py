"""Observers of a pipeline run: live progress on stderr (and OpenTelemetry, ``otel.py``).

The runner calls, for every observer:

- ``event(body)`` with every event, after masking, in the order written (the dict that
  became the line on stdout; ``task_output`` included, observers skip it cheaply);
- ``activity(stage_id, task_id, tool, turns, cost_usd)`` when a task's agent starts a
  tool call (``tool`` its name) or finishes a turn (``tool`` None); ``turns`` and
  ``cost_usd`` so far when known, else None (``StreamActivity`` derives these from the
  agent's stream-json lines);
- ``close()`` once at the end (after the result), also after an error.

Calls may come from any thread; each observer locks what it needs. They must be cheap:
they run on the executor's loop thread.

``make_progress(mode, stream, env)`` picks the view for ``--progress``: ``live`` (the
table, ``live.py``), ``plain`` (a line per task start/retry/check/finish, ``plain.py``),
``off`` (None), or ``auto``: live when ``stream`` is a terminal and ``TERM`` is not
``dumb``, else plain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TextIO

from claude_runner.errors import UsageError

MODES = ("auto", "live", "plain", "off")


class RunObserver(Protocol):
    def event(self, body: dict[str, Any]) -> None: ...

    def activity(
        self,
        stage_id: str,
        task_id: str,
        tool: str | None,
        turns: int | None,
        cost_usd: float | None,
    ) -> None: ...

    def close(self) -> None: ...


def is_live_terminal(stream: TextIO, env: Mapping[str, str]) -> bool:
    if env.get("TERM", "") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def make_progress(mode: str, stream: TextIO, env: Mapping[str, str]) -> RunObserver | None:
    """The progress view for ``--progress MODE`` on ``stream`` (the runner's stderr)."""
    if mode not in MODES:
        raise UsageError(f"--progress {mode!r} is not supported; use one of: {', '.join(MODES)}")
    if mode == "off":
        return None
    if mode == "auto":
        mode = "live" if is_live_terminal(stream, env) else "plain"
    if mode == "live":
        from claude_runner.progress.live import LiveView  # noqa: PLC0415

        return LiveView(stream, env)
    from claude_runner.progress.plain import PlainView  # noqa: PLC0415

    return PlainView(stream)


class Observers:
    """Several observers as one; an observer that raises is dropped, the run goes on."""

    def __init__(self, observers: Sequence[RunObserver | None]) -> None:
        self.observers = [o for o in observers if o is not None]

    def __bool__(self) -> bool:
        return bool(self.observers)

    def _each(self, method: str, *args: Any) -> None:
        for observer in list(self.observers):
            try:
                getattr(observer, method)(*args)
            except Exception:  # a view must never break a run
                self.observers.remove(observer)

    def event(self, body: dict[str, Any]) -> None:
        self._each("event", body)

    def activity(
        self,
        stage_id: str,
        task_id: str,
        tool: str | None,
        turns: int | None,
        cost_usd: float | None,
    ) -> None:
        self._each("activity", stage_id, task_id, tool, turns, cost_usd)

    def close(self) -> None:
        self._each("close")


def _object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class StreamActivity:
    """Activity of one task's agent from its stream-json lines, for ``activity()``.

    ``feed(line)`` returns ``(tool, turns, cost_usd)`` when the line changes what the
    views show, else None. Only ``assistant`` lines are parsed (a tool result, the bulk
    of a stream, is recognised by a substring and never parsed); turns count the API
    responses (distinct message ids), like the CLI's ``num_turns``; the cost is known
    from the ``result`` line.
    """

    def __init__(self) -> None:
        self.messages: set[str] = set()
        self.tool: str | None = None

    def feed(self, line: bytes) -> tuple[str | None, int | None, float | None] | None:
        if b'"tool_result"' in line and b'"assistant"' not in line:
            was, self.tool = self.tool, None
            return None if was is None else (None, len(self.messages), None)
        if b'"assistant"' not in line and b'"result"' not in line:
            return None
        message = _object(line)
        if message is None:
            return None
        if message.get("type") == "result":
            cost, turns = message.get("total_cost_usd"), message.get("num_turns")
            return (
                None,
                turns if isinstance(turns, int) else len(self.messages),
                float(cost) if isinstance(cost, int | float) else None,
            )
        body = message.get("message")
        if message.get("type") == "assistant" and isinstance(body, dict):
            return self._assistant(body)
        return None

    def _assistant(self, body: dict[str, Any]) -> tuple[str | None, int | None, None] | None:
        new_turn = isinstance(body.get("id"), str) and body["id"] not in self.messages
        if new_turn:
            self.messages.add(body["id"])
        tools = [
            b.get("name")
            for b in body.get("content") or []
            if isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        tool = str(tools[-1]) if tools else None
        if tool is None and not new_turn:
            return None
        self.tool = tool
        return tool, len(self.messages), None
