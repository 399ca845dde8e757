"""Bounded, line-aligned handling of an agent's stdout and the few stream-json facts we need.

Output arrives in chunks (whatever one read returned: the executor's loop reads every
task's pipe). The log gets every chunk through a streaming masker (``redact``), which
is exact across chunk boundaries for lines of any length with bounded memory. The line
work is done in blocks cut at the last newline, so it happens in C (one search per
needle per block) and lines are never split or glued. The unfinished line is held only
up to ``MAX_LINE`` (64 MiB); a longer one is reported as overlong instead of parsed, so
memory stays bounded whatever the agent prints (unlike asyncio's ``readline``, which
hands back a line's tail as a line).

JSON is parsed only for lines that can matter: those containing ``"system"`` (the
``system``/``init`` line with ``session_id``; no longer searched once found),
``"api_retry"`` (the CLI announcing a retry and its delay) or ``"result"`` (the final
result message), and ``"assistant"`` only when asked (token usage, the tool in use).
Inside a JSON string a quote is always escaped, so an unescaped ``"result"`` appears only
as a key or a whole string value: the search works for any key order and spacing, and
the real check is made on the parsed object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from claude_runner.redact import StreamMasker

MAX_LINE = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
_SYSTEM = b'"system"'
_RESULT = b'"result"'
_ASSISTANT = b'"assistant"'
_API_RETRY = b'"api_retry"'


def parse_object(line: bytes) -> dict[str, object] | None:
    """The line as a JSON object, or None when it is not one."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def session_id_of_init(message: dict[str, object]) -> str | None:
    """The session id of a ``system``/``init`` message."""
    if message.get("type") == "system" and message.get("subtype") == "init":
        sid = message.get("session_id")
        return sid if isinstance(sid, str) and sid else None
    return None


def is_result(message: dict[str, object]) -> bool:
    return message.get("type") == "result"


@dataclass
class PumpStats:
    """What a ``StreamSink`` saw: counts, and the sizes of lines too long to parse."""

    lines: int = 0
    bytes: int = 0
    overlong: list[int] = field(default_factory=list)


class _Scanner:
    """Finds the ``system``/``init`` and ``result`` messages (and, when wanted, the
    ``assistant`` ones) in blocks of whole lines."""

    def __init__(
        self, on_message: Callable[[dict[str, object]], None], *, want_assistant: bool
    ) -> None:
        self.on_message = on_message
        self.want_system = True
        self.want_assistant = want_assistant

    def scan(self, block: bytes) -> None:
        if self.want_system:
            self._find(block, _SYSTEM)
        if self.want_assistant:
            self._find(block, _ASSISTANT)
        if _API_RETRY in block:  # rare: the CLI announces a retry of an API request
            self._find(block, _API_RETRY)
        self._find(block, _RESULT)

    def _find(self, block: bytes, needle: bytes) -> None:
        at = block.find(needle)
        while at >= 0:
            start = block.rfind(b"\n", 0, at) + 1
            end = block.find(b"\n", at)
            end = len(block) if end < 0 else end
            message = parse_object(block[start:end])
            if message is not None:
                if is_result(message) and needle is _RESULT:
                    self.on_message(message)
                elif needle is _SYSTEM and session_id_of_init(message) is not None:
                    self.want_system = False
                    self.on_message(message)
                    return
                elif (needle is _ASSISTANT and message.get("type") == "assistant") or (
                    needle is _API_RETRY and message.get("subtype") == "api_retry"
                ):
                    self.on_message(message)
            at = block.find(needle, end)


class _LineSplitter:
    """Cuts a byte stream into blocks of whole lines for ``write_lines`` and skips lines
    longer than ``limit`` (counted in ``stats``), holding at most ``limit`` bytes."""

    def __init__(
        self,
        *,
        limit: int,
        write_lines: Callable[[bytes], None],
        stats: PumpStats,
    ) -> None:
        self.limit = limit
        self.write_lines, self.stats = write_lines, stats
        self.pending: list[bytes] = []  # chunks of the unfinished line
        self.pending_len = 0
        self.skipping = -1  # bytes so far of an overlong line passed through, else -1

    def _overlong_done(self, length: int) -> None:
        self.stats.overlong.append(length)
        self.stats.lines += 1
        self.stats.bytes += length + 1

    def _drop_pending(self) -> None:
        self.pending, self.pending_len = [], 0

    def feed(self, chunk: bytes) -> None:
        newline = chunk.find(b"\n")
        if self.skipping >= 0:  # the rest of an overlong line
            if newline < 0:
                self.skipping += len(chunk)
                return
            self._overlong_done(self.skipping + newline)
            self.skipping = -1
            chunk = chunk[newline + 1 :]
            newline = chunk.find(b"\n")
        if not chunk:
            return
        if newline < 0:
            self.pending.append(chunk)
            self.pending_len += len(chunk)
            if self.pending_len > self.limit:  # stop holding it
                self.skipping = self.pending_len
                self._drop_pending()
            return
        if self.pending:
            if self.pending_len + newline > self.limit:
                length = self.pending_len + newline
                self._drop_pending()
                self._overlong_done(length)
                chunk = chunk[newline + 1 :]
            else:
                self.pending.append(chunk)
                chunk = b"".join(self.pending)
                self.pending, self.pending_len = [], 0
        end = chunk.rfind(b"\n") + 1
        if end:
            self.write_lines(chunk[:end] if end < len(chunk) else chunk)
        if end < len(chunk):
            self.pending.append(chunk[end:])
            self.pending_len = len(chunk) - end

    def close(self) -> None:
        if self.skipping >= 0:
            self._overlong_done(self.skipping)
        elif self.pending:
            self.write_lines(b"".join(self.pending) + b"\n")
            self.pending, self.pending_len = [], 0


class StreamSink:
    """Takes an agent's stdout chunk by chunk (``feed``) until ``close``.

    Writes it to ``log`` (a write function) through ``masker`` (secrets masked, exactly
    whatever the chunking; none: unmasked). ``on_message`` receives the parsed
    ``system``/``init`` and ``result`` messages (and the ``assistant`` ones with
    ``want_assistant``); ``on_block`` every block of whole lines (a live view's
    activity); ``on_line`` (verbosity vv) receives every line (without its newline). They
    get the agent's bytes unmasked: whoever writes them out masks them
    (the ``EventWriter``, the result). A line longer than ``limit`` still reaches the log
    whole but is neither parsed nor forwarded; ``stats.overlong`` records its size. A
    last line without a newline gets one in the log. Feed chunks of at most
    ``read_size`` bytes, so that only a block's first line can exceed ``limit``.

    Lines are handled in blocks cut at the last newline: one search per needle per
    block, in C, rather than per line in Python; only lines that contain a needle are
    parsed. The unfinished line is kept as a list of chunks, joined once when its
    newline arrives.
    """

    def __init__(
        self,
        log: Callable[[bytes], object],
        *,
        on_message: Callable[[dict[str, object]], None],
        on_line: Callable[[bytes], None] | None = None,
        masker: StreamMasker | None = None,
        limit: int = MAX_LINE,
        want_assistant: bool = False,
        on_block: Callable[[bytes], None] | None = None,
    ) -> None:
        self.stats = PumpStats()
        self.read_size = min(_CHUNK, limit)
        self._log = log
        self._masker = masker
        self._scanner = _Scanner(on_message, want_assistant=want_assistant)
        self._on_line = on_line
        self._on_block = on_block
        self._splitter = _LineSplitter(limit=limit, write_lines=self._write_lines, stats=self.stats)
        self._last = b"\n"  # the last byte fed (none yet: no newline to add)

    def feed(self, chunk: bytes) -> None:
        """The next chunk of the agent's stdout."""
        if not chunk:
            return
        self._last = chunk[-1:]
        out = self._masker.feed(chunk) if self._masker is not None else chunk
        if out:
            self._log(out)
        self._splitter.feed(chunk)

    def _write_lines(self, block: bytes) -> None:
        self.stats.lines += block.count(b"\n")
        self.stats.bytes += len(block)
        self._scanner.scan(block)
        if self._on_block is not None:
            self._on_block(block)
        if self._on_line is not None:
            for line in block.split(b"\n")[:-1]:
                self._on_line(line)

    def close(self) -> PumpStats:
        """The end of the stream: flush an unfinished last line."""
        self._splitter.close()
        rest = self._masker.close() if self._masker is not None else b""
        if self._last != b"\n":
            rest += b"\n"
        if rest:
            self._log(rest)
        return self.stats


class MaskedLog:
    """A byte stream written to a log through a streaming masker (exact across chunks,
    for lines of any length), never parsed: the agent's stderr. A last line without a
    newline gets one, as in ``StreamSink``."""

    def __init__(self, log: Callable[[bytes], object], *, masker: StreamMasker) -> None:
        self._log = log
        self._masker = masker
        self._last = b"\n"

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._last = chunk[-1:]
        out = self._masker.feed(chunk)
        if out:
            self._log(out)

    def close(self) -> None:
        rest = self._masker.close()
        if self._last != b"\n":
            rest += b"\n"
        if rest:
            self._log(rest)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
