"""SIGINT/SIGTERM become a cancellation request that every mode honours.

The handler records the signal and sets an event; the running mode stops its children
in order (agents first, then the daemon) and the runner exits 128+N. During start-up
(``interruptible``) it also raises ``Interrupted``, so a step blocked in a child (a
copy, ``gh``) ends at once: ``proc.run`` stops its child on the way out.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # like KeyboardInterrupt: a control-flow signal
    """Raised in the main thread by a signal during an interruptible phase."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Cancellation:
    """Context manager installing the handlers; ``event`` is set on the first signal."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._listeners: list[Callable[[int], None]] = []
        self._previous: dict[int, object] = {}
        self._interruptible = False

    def on_signal(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(signum)`` from the handler (keep it tiny: it runs there)."""
        self._listeners.append(listener)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()
        for listener in self._listeners:
            listener(signum)
        if self._interruptible:
            self._interruptible = False  # raise once; a second signal is recorded only
            raise Interrupted(signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """While inside, a signal (also one that came earlier) raises ``Interrupted``."""
        if self.signum is not None:
            raise Interrupted(self.signum)
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

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
