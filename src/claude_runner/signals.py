"""SIGINT/SIGTERM become a cancellation request that every mode honours.

The handler only records the signal and sets an event; the running mode stops its
children in order (agents first, then the daemon) and the runner exits 128+N.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Cancellation:
    """Context manager installing the handlers; ``event`` is set on the first signal."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._listeners: list[Callable[[int], None]] = []
        self._previous: dict[int, object] = {}

    def on_signal(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(signum)`` from the handler (keep it tiny: it runs there)."""
        self._listeners.append(listener)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()
        for listener in self._listeners:
            listener(signum)

    def __enter__(self) -> Cancellation:
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
