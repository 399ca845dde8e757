"""Bounded line reading of an agent's stdout and the few stream-json facts we need.

Lines are read with a blocking ``readline(limit)`` on a buffered binary pipe (twice as fast
as asyncio here). A line is held in memory only up to ``MAX_LINE`` (64 MiB); the rest of a
longer line is streamed to the sink in chunks and reported as ``overlong`` instead of
being parsed, so memory stays bounded and nothing is silently glued or cut.

JSON is parsed only for lines that can matter: those containing ``"system"`` (the
``system``/``init`` line carrying ``session_id``) or ``"result"`` (the final result
message). Inside a JSON string a quote is always escaped, so an unescaped ``"result"``
appears only as a key or a whole string value; the pre-check tolerates any key order and
spacing, and the real check happens on the parsed object.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

MAX_LINE = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
_SYSTEM = b'"system"'
_RESULT = b'"result"'


@dataclass(frozen=True)
class Piece:
    """A whole line (``whole``), or a part of an overlong one: its first ``limit`` bytes
    (``head``), middle chunks (``more``) and the last chunk (``end``). Newlines are
    stripped; a line ends after a ``whole`` or ``end`` piece."""

    data: bytes
    kind: str = "whole"

    @property
    def ends_line(self) -> bool:
        return self.kind in ("whole", "end")


def read_pieces(stream: IO[bytes], *, limit: int = MAX_LINE) -> Iterator[Piece]:
    """Yield the lines of ``stream`` as pieces. No more than ``limit`` bytes of one line
    are ever held: a longer line arrives as a ``head`` followed by bounded chunks."""
    readline = stream.readline
    while True:
        raw = readline(limit + 1)  # + the newline: a line of ``limit`` bytes is whole
        if not raw:
            return
        if raw.endswith(b"\n"):
            yield Piece(raw[:-1])
            continue
        if len(raw) <= limit:  # the last line, without a newline
            yield Piece(raw)
            return
        yield Piece(raw, "head")  # longer than ``limit``: the rest follows in chunks
        while True:
            chunk = readline(_CHUNK)
            if not chunk:
                yield Piece(b"", "end")
                return
            if chunk.endswith(b"\n"):
                yield Piece(chunk[:-1], "end")
                break
            yield Piece(chunk, "more")


def maybe_interesting(line: bytes) -> bool:
    """Cheap pre-check: could this line be a ``system`` or ``result`` message?"""
    return _SYSTEM in line or _RESULT in line


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
    """What ``pump`` saw: counts, and the sizes of lines too long to parse."""

    lines: int = 0
    bytes: int = 0
    overlong: list[int] = field(default_factory=list)


def _mask(data: bytes, secrets: tuple[bytes, ...]) -> bytes:
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, b"***")
    return data


def pump(
    stdout: IO[bytes],
    log: IO[bytes],
    *,
    on_message: Callable[[dict[str, object]], None],
    on_line: Callable[[bytes], None] | None = None,
    secrets: tuple[bytes, ...] = (),
    limit: int = MAX_LINE,
) -> PumpStats:
    """Copy an agent's stdout to ``log`` line by line (secrets masked) until EOF.

    ``on_message`` receives the parsed ``system``/``init`` and ``result`` messages;
    ``on_line`` (verbosity vv) receives every whole line. Lines longer than ``limit``
    still reach the log whole, in bounded chunks, but are neither parsed nor forwarded.
    """
    stats = PumpStats()
    want_system = True
    write = log.write
    overlong = 0
    for piece in read_pieces(stdout, limit=limit):
        data = _mask(piece.data, secrets) if secrets else piece.data
        write(data)
        if piece.kind != "whole":
            overlong += len(data)
            if piece.kind == "end":
                write(b"\n")
                stats.lines += 1
                stats.overlong.append(overlong)
                stats.bytes += overlong + 1
                overlong = 0
            continue
        write(b"\n")
        stats.lines += 1
        stats.bytes += len(data) + 1
        if (want_system and _SYSTEM in data) or _RESULT in data:
            message = parse_object(data)
            if message is not None and (
                is_result(message) or session_id_of_init(message) is not None
            ):
                if not is_result(message):
                    want_system = False
                on_message(message)
        if on_line is not None:
            on_line(data)
    return stats
