"""Relay a child's stdout and stderr to the runner's own, masked, as they arrive.

Single-prompt mode runs the CLI with its output on pipes so that secrets are masked on
the way to a CI log, where they leak. Otherwise the output is byte-identical and
streaming: every read is written and flushed at once, minus only the bytes that could
still be the start of a secret (``redact``: the end of a read that begins an anchor or
continues a known value; a line's newline releases it), which follow with the next read
or at the end.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

from claude_runner.redact import Redactor, StreamMasker

READ_SIZE = 64 * 1024
# After the child exits, how long a process it left behind (a Bash tool's background
# job) may keep its output open before the relay stops reading and returns.
DRAIN = 2.0
_TICK = 0.1


class _Out:
    """One of our output streams behind its own masker."""

    def __init__(self, masker: StreamMasker, stream: BinaryIO) -> None:
        self.masker = masker
        self.stream: BinaryIO | None = stream

    def write(self, data: bytes) -> None:
        if not data or self.stream is None:
            return
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:  # the reader went away: keep draining, write nothing
            self.stream = None


def relay(
    child: subprocess.Popen[bytes],
    redactor: Redactor,
    *,
    tick: Callable[[], None] = lambda: None,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
) -> None:
    """Copy ``child``'s stdout and stderr (both pipes) to ``stdout``/``stderr`` (ours by
    default) through ``redactor`` until both end, or ``DRAIN`` seconds after the child
    exited. ``tick`` is called at least every 0.1 s (to act on a cancellation)."""
    if child.stdout is None or child.stderr is None:
        raise ValueError("relay needs the child's stdout and stderr on pipes")
    sys.stdout.flush()
    sys.stderr.flush()
    outs = {
        child.stdout.fileno(): _Out(redactor.stream(), stdout or sys.stdout.buffer),
        child.stderr.fileno(): _Out(redactor.stream(), stderr or sys.stderr.buffer),
    }
    exited: float | None = None
    with selectors.DefaultSelector() as selector:
        for fd in outs:
            selector.register(fd, selectors.EVENT_READ)
        while outs:
            tick()
            if exited is None and child.poll() is not None:
                exited = time.monotonic()
            elif exited is not None and time.monotonic() - exited > DRAIN:
                break
            for key, _ in selector.select(timeout=_TICK):
                out = outs[key.fd]
                data = os.read(key.fd, READ_SIZE)
                if data:
                    out.write(out.masker.feed(data))
                    continue
                out.write(out.masker.close())
                selector.unregister(key.fd)
                del outs[key.fd]
    for out in outs.values():  # given up on: what was read still goes out
        out.write(out.masker.close())
    child.stdout.close()
    child.stderr.close()
