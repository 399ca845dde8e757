"""The stage loop: one thread runs a stage's tasks, one per concurrency slot at a time
(a slot is a ``CLAUDE_CONFIG_DIR``; a stage has ``max_parallel`` of them, or one).

It starts tasks, reads every running CLI's stdout (non-blocking pipes in one selector),
learns of their exits (a pidfd per CLI, or polling where the kernel has none), and hands
the two steps that may block (a workspace copy before, git and a /proc sweep after) to
short-lived helper threads that post back through a wake-up pipe. One thread instead of
a thread per task: with 16 threads blocked in reads, every chunk and exit was a fight
for the GIL, and the scheduling alone cost more CPU than the agents it ran.

A CLI that has exited while a process it started still holds its stdout open gets
``PIPE_DRAIN`` seconds; then the task's marked processes and whatever holds the pipe are
killed, and if the pipe is still open another ``PIPE_DRAIN`` later (a process of another
user), the loop stops reading it: the task ends with what it has, nothing blocks the
stage.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from claude_runner import proc, sched
from claude_runner.pipeline.task import STOP_GRACE, TaskRun

PIPE_DRAIN = 5.0
_POLL = 0.05  # how often the loop looks at the cancel flag and its timers
_EXIT_POLL = 0.005  # without pidfds: how often an exit is looked for after EOF
_READ_SIZE = 1024 * 1024


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # old kernel, or a seccomp profile refusing it
        return None


class _Running:
    """The loop's view of one launched task."""

    __slots__ = ("drain_deadline", "drained_once", "out_fd", "pid_fd", "run")

    def __init__(self, run: TaskRun, out_fd: int, pid_fd: int | None) -> None:
        self.run = run
        self.out_fd: int | None = out_fd  # None once the output ended
        self.pid_fd = pid_fd
        self.drain_deadline: float | None = None
        self.drained_once = False


class StageLoop:
    """Runs ``runs`` to their ``task_finish``; see the module docstring."""

    def __init__(
        self,
        runs: Sequence[TaskRun],
        *,
        config_dirs: Sequence[Path],
        abort_reason: Callable[[], str | None],
        finished: Callable[[TaskRun], None],
    ) -> None:
        self._pending = deque(runs)
        self._limit = len(config_dirs)  # one concurrency slot per CLAUDE_CONFIG_DIR
        self._config_dirs = config_dirs
        self._abort_reason = abort_reason
        self._finished = finished
        self._free_slots = list(reversed(range(self._limit)))
        self._slot_of: dict[TaskRun, int] = {}
        self._seeded: set[int] = set()
        self._active: set[TaskRun] = set()  # started, not yet finished
        self._running: dict[TaskRun, _Running] = {}  # launched, exit or output pending
        self._posted: queue.SimpleQueue[tuple[TaskRun, Callable[[TaskRun], None]]] = (
            queue.SimpleQueue()
        )
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._buffer = memoryview(bytearray(_READ_SIZE))
        self._cancelled_all = False
        self._closed = False  # the wake-up pipe is closed: helpers must not write to it
        self._close_lock = threading.Lock()

    def run(self) -> None:
        sched.short_slice_for_this_thread()
        try:
            while self._pending or self._active:
                self._check_abort()
                while self._pending and len(self._active) < self._limit:
                    self._start(self._pending.popleft())
                self._turn()
        finally:
            self._close()

    # --- one turn of the loop -----------------------------------------------------------
    def _turn(self) -> None:
        for key, _ in self._selector.select(self._timeout()):
            if key.fd == self._wake_r:
                self._take_posted()
            elif isinstance(key.data, _Running):
                entry = key.data
                if key.fd == entry.out_fd:
                    self._read(entry)
                elif key.fd == entry.pid_fd:
                    self._exited(entry)
        self._check_timers()

    def _timeout(self) -> float:
        timeout = _POLL
        now = time.monotonic()
        for entry in self._running.values():
            if entry.pid_fd is None and entry.out_fd is None:
                timeout = min(timeout, _EXIT_POLL)
            if entry.drain_deadline is not None:
                timeout = min(timeout, max(0.0, entry.drain_deadline - now))
        return timeout

    def _check_abort(self) -> None:
        reason = self._abort_reason()
        if reason is None:
            return
        if not self._cancelled_all:
            self._cancelled_all = True
            for run in self._active:
                run.cancel(reason)
        while self._pending:
            self._pending.popleft().skip(reason)

    def _check_timers(self) -> None:
        now = time.monotonic()
        for entry in list(self._running.values()):
            run, child = entry.run, entry.run.child
            # No pidfd: poll at every turn (at least every _EXIT_POLL after EOF, every
            # _POLL before).
            if (
                entry.pid_fd is None
                and run.returncode is None
                and child is not None
                and child.poll() is not None
            ):
                self._exited(entry)
                continue
            if entry.drain_deadline is not None and now >= entry.drain_deadline:
                if not entry.drained_once:
                    entry.drained_once = True
                    run.output_held_open()
                    entry.drain_deadline = time.monotonic() + PIPE_DRAIN
                else:
                    run.result.notes.append(
                        "the output was still held open after the kill: stopped reading it"
                    )
                    self._output_ended(entry)

    # --- a task's way through the loop ----------------------------------------------------
    def _start(self, run: TaskRun) -> None:
        self._slot_of[run] = self._free_slots.pop()
        self._active.add(run)
        run.begin()
        if run.prepare_blocks:
            self._offload(run, TaskRun.prepare, self._launch)
        else:
            run.prepare()
            self._launch(run)

    def _launch(self, run: TaskRun) -> None:
        slot = self._slot_of[run]
        seed = slot not in self._seeded
        self._seeded.add(slot)
        out_fd = run.launch(self._config_dirs[slot], seed_config=seed)
        if out_fd is None or run.child is None:
            self._complete(run, None)
            return
        os.set_blocking(out_fd, False)
        entry = _Running(run, out_fd, _pidfd(run.child.pid))
        self._running[run] = entry
        self._selector.register(out_fd, selectors.EVENT_READ, entry)
        if entry.pid_fd is not None:
            self._selector.register(entry.pid_fd, selectors.EVENT_READ, entry)

    def _read(self, entry: _Running) -> None:
        assert entry.out_fd is not None  # noqa: S101 - unregistered when it ends
        try:
            n = os.readv(entry.out_fd, [self._buffer[: entry.run.read_size]])
        except BlockingIOError:
            return
        except OSError as exc:
            entry.run.result.notes.append(f"reading the CLI's output failed: {exc}")
            n = 0
        if n:
            entry.run.feed(bytes(self._buffer[:n]))
        else:
            self._output_ended(entry)

    def _output_ended(self, entry: _Running) -> None:
        assert entry.out_fd is not None  # noqa: S101
        self._selector.unregister(entry.out_fd)
        entry.out_fd = None
        entry.drain_deadline = None
        entry.run.output_closed()
        if entry.run.returncode is not None:
            self._launched_done(entry)

    def _exited(self, entry: _Running) -> None:
        run = entry.run
        assert run.child is not None  # noqa: S101
        if entry.pid_fd is not None:
            self._selector.unregister(entry.pid_fd)
            os.close(entry.pid_fd)
            entry.pid_fd = None
        run.returncode = run.child.wait()  # exited: returns at once
        if entry.out_fd is None:
            self._launched_done(entry)
        else:
            entry.drain_deadline = time.monotonic() + PIPE_DRAIN

    def _launched_done(self, entry: _Running) -> None:
        del self._running[entry.run]
        self._complete(entry.run, entry.run.returncode)

    def _complete(self, run: TaskRun, returncode: int | None) -> None:
        run.settle(returncode)
        if run.conclude_blocks:
            self._offload(run, TaskRun.conclude, self._finish)
        else:
            run.conclude()
            self._finish(run)

    def _finish(self, run: TaskRun) -> None:
        run.finish()
        self._active.discard(run)
        self._free_slots.append(self._slot_of.pop(run))
        self._finished(run)

    # --- helper threads -------------------------------------------------------------------
    def _offload(
        self, run: TaskRun, step: Callable[[TaskRun], None], then: Callable[[TaskRun], None]
    ) -> None:
        """Run ``step(run)`` in a helper thread, then ``then(run)`` back in the loop."""

        def work() -> None:
            try:
                step(run)  # steps never raise
            finally:
                self._posted.put((run, then))
                with self._close_lock:
                    if not self._closed:
                        with contextlib.suppress(BlockingIOError):  # one is pending anyway
                            os.write(self._wake_w, b"\0")

        threading.Thread(target=work, name=f"task-{run.task.id}", daemon=True).start()

    def _take_posted(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        while True:
            try:
                run, then = self._posted.get_nowait()
            except queue.Empty:
                return
            then(run)

    # --- the end ----------------------------------------------------------------------------
    def _close(self) -> None:
        """Normally nothing is left; after an internal error, stop what still runs."""
        for entry in list(self._running.values()):
            child = entry.run.child
            if child is not None and child.poll() is None:
                proc.stop(child, grace=STOP_GRACE)
            if entry.out_fd is not None:
                entry.run.output_closed()
            if entry.pid_fd is not None:
                os.close(entry.pid_fd)
        self._selector.close()
        with self._close_lock:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)


def run_stage(
    runs: Sequence[TaskRun],
    *,
    config_dirs: Sequence[Path],
    abort_reason: Callable[[], str | None],
    finished: Callable[[TaskRun], None],
) -> None:
    """Run a stage's tasks, one per config dir at a time, each to its ``task_finish``."""
    StageLoop(runs, config_dirs=config_dirs, abort_reason=abort_reason, finished=finished).run()
