"""Observers of a pipeline run: live progress on stderr (and OpenTelemetry, ``otel.py``).

The runner calls, for every observer:

- ``event(body)`` with every event, after masking, in the order written (the dict that
  became the line on stdout; ``task_output`` included, observers skip it cheaply);
- ``activity(stage_id, task_id, tool, turns, cost_usd)`` when a task's agent starts a
  tool call (``tool`` its name) or finishes a turn (``tool`` None); ``turns`` and
  ``cost_usd`` so far when known, else None (``StreamActivity`` derives these from the
  agent's stream-json output, a block of lines at a time);
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
import re
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
    from claude_runner.redact import Redactor  # noqa: PLC0415

    return PlainView(stream, Redactor.from_env(env))


def make_observers(progress: str, stream: TextIO, env: Mapping[str, str]) -> Observers:
    """Every observer of a run: the progress view of ``--progress`` and, when
    configured, OpenTelemetry. Empty (falsy) when there is none."""
    from claude_runner.otel import make_otel_observer  # noqa: PLC0415

    return Observers([make_progress(progress, stream, env), make_otel_observer(env)])


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


# The CLI writes compact JSON.
_MESSAGE_ID = re.compile(rb'"id":"(msg_[^"\\]+)"')
_TOOL = b'"tool_'  # "tool_use" (a call) or "tool_result" / "tool_use_id" (its result)
_TOOL_USE = b'"tool_use"'
_BACKSLASH = 0x5C


def _object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _line_at(block: bytes, at: int) -> bytes:
    start = block.rfind(b"\n", 0, at) + 1
    end = block.find(b"\n", at)
    return block[start : len(block) if end < 0 else end]


class StreamActivity:
    """Activity of one task's agent from its stream-json output, for ``activity()``.

    ``feed(block)`` takes whole lines (one or a block of many, as the executor handles
    them) and returns ``(tool, turns, cost_usd)`` when what the views show changed, else
    None. Like the executor's own scanner it searches the block in C and parses only the
    line that matters: the last ``tool_use`` (the tool now running) unless a
    ``tool_result`` came after it (none running). Turns are the API responses so far:
    distinct assistant message ids (``"id":"msg_..."`` as the CLI writes them), which is
    what ``num_turns`` counts; every turn but the last calls a tool, so ids are looked
    for in blocks with tool traffic only. ``result(message)`` takes the CLI's final
    ``result`` message, which the executor parses anyway: the last turn and the cost.
    One backward search per block of bulk text: ~0.03 s of CPU per 128 MB here.
    """

    def __init__(self) -> None:
        self.messages: set[bytes] = set()
        self.tool: str | None = None
        self.turns: int | None = None
        self.cost: float | None = None

    def feed(self, block: bytes) -> tuple[str | None, int | None, float | None] | None:
        before = (self.tool, self.turns, self.cost)
        last = block.rfind(_TOOL)  # one backward search finds the latest of both
        while last > 0 and block[last - 1] == _BACKSLASH:  # inside a string: not a key
            last = block.rfind(_TOOL, 0, last)
        if last >= 0:
            # Every turn but the last calls a tool: bulk text costs no search for ids.
            self.messages.update(m.group(1) for m in _MESSAGE_ID.finditer(block))
            self.turns = len(self.messages) or self.turns
            if block.startswith(_TOOL_USE, last):
                self.tool = self._tool_name(_line_at(block, last)) or self.tool
            else:
                self.tool = None
        after = (self.tool, self.turns, self.cost)
        return after if after != before else None

    @staticmethod
    def _tool_name(line: bytes) -> str | None:
        message = _object(line)
        body = message.get("message") if message else None
        if not isinstance(body, dict):
            return None
        names = [
            b.get("name")
            for b in body.get("content") or []
            if isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        return str(names[-1]) if names else None

    def result(self, message: Mapping[str, Any]) -> tuple[str | None, int | None, float | None]:
        """The CLI's ``result`` message (the executor parses it already): its turns and
        cost, and no tool running."""
        cost, turns = message.get("total_cost_usd"), message.get("num_turns")
        if isinstance(cost, int | float):
            self.cost = float(cost)
        if isinstance(turns, int):
            self.turns = turns
        self.tool = None
        return self.tool, self.turns, self.cost
