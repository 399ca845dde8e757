"""The run's scheduler: one thread runs every task of the plan as a graph.

Stages compile into a graph (``graph.py``): a task waits for the tasks it needs, and
becomes ready when they are all done. Ready tasks start in plan order within each
stage's ``max_parallel`` (and the plan's ``max_concurrency``); a concurrency slot is a
``CLAUDE_CONFIG_DIR``, taken by one running task at a time. A task that is ready while
the run is aborting (a signal, a ``fail_fast`` failure) is skipped instead, so every
task gets exactly one ``task_finish`` and always after the tasks it needs. A stage's
``stage_start`` comes with its first task decided, its ``stage_finish`` with its last
task done; for a v1 plan (each stage needs the whole previous one) this is exactly the
old order: stage after stage.

The same thread starts the CLIs, reads every running CLI's stdout and stderr
(non-blocking pipes in one selector), learns of their exits (a pidfd per CLI, or polling
where the kernel has none), and hands the steps that may block (a workspace copy before,
git and a /proc sweep after) to short-lived helper threads that post back through a
wake-up pipe. One thread instead of a thread per task: with 16 threads blocked in reads,
every chunk and exit was a fight for the GIL, and the scheduling alone cost more CPU than
the agents it ran.

A CLI that has exited while a process it started still holds one of its pipes open gets
``PIPE_DRAIN`` seconds; then the task's marked processes and whatever holds the pipe are
killed, and if the pipe is still open another ``PIPE_DRAIN`` later (a process of another
user), the scheduler stops reading it: the task ends with what it has, nothing blocks
the run.
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
from dataclasses import dataclass, field
from pathlib import Path

from claude_runner import proc, procs, sched
from claude_runner.pipeline import taskspace
from claude_runner.pipeline.events import StageFinish, StageStart
from claude_runner.pipeline.result import counts, overall_status
from claude_runner.pipeline.state import TaskStatus
from claude_runner.pipeline.task import STOP_GRACE, RunContext, TaskRun, marker_of

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


@dataclass(eq=False)
class Stage:
    """A stage's bookkeeping: its limit, its tasks' progress, its events."""

    id: str
    mode: str
    max_parallel: int | None
    nodes: list[Node] = field(default_factory=list)
    ready: deque[Node] = field(default_factory=deque)
    running: int = 0
    left: int = 0
    started: float | None = None  # monotonic time of stage_start, once emitted

    @property
    def limit(self) -> int:
        if self.mode == "sequential":
            return 1
        return self.max_parallel or len(self.nodes)


@dataclass(eq=False)
class Node:
    """One task of the graph."""

    run: TaskRun
    stage: Stage
    needs: list[Node] = field(default_factory=list)
    dependents: list[Node] = field(default_factory=list)
    waiting: int = 0  # needs not yet done
    done: bool = False


class _Running:
    """The scheduler's view of one launched CLI."""

    __slots__ = ("drain_deadline", "drained_once", "err_fd", "node", "out_fd", "pid_fd")

    def __init__(self, node: Node, out_fd: int, err_fd: int, pid_fd: int | None) -> None:
        self.node = node
        self.out_fd: int | None = out_fd  # None once the output ended
        self.err_fd: int | None = err_fd
        self.pid_fd = pid_fd
        self.drain_deadline: float | None = None
        self.drained_once = False

    @property
    def open_pipes(self) -> list[int]:
        return [fd for fd in (self.out_fd, self.err_fd) if fd is not None]


class Scheduler:
    """Runs the graph's tasks to their ``task_finish``; see the module docstring."""

    def __init__(
        self,
        stages: Sequence[Stage],
        ctx: RunContext,
        *,
        max_concurrency: int | None,
        abort_reason: Callable[[], str | None],
    ) -> None:
        self._stages = list(stages)
        self._nodes = [n for s in stages for n in s.nodes]
        self._ctx = ctx
        self._limit = max_concurrency or len(self._nodes) or 1
        self._abort_reason = abort_reason
        self._fail_fast: str | None = None
        self._left = len(self._nodes)
        self._free_slots: list[int] = []
        self._slot_count = 0
        self._slot_of: dict[Node, int] = {}
        self._active: set[Node] = set()  # started, not yet finished
        self._running: dict[Node, _Running] = {}  # launched, exit or output pending
        self._posted: queue.SimpleQueue[tuple[Node, Callable[[Node], None]]] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._buffer = memoryview(bytearray(_READ_SIZE))
        self._cancelled_all = False
        self._closed = False  # the wake-up pipe is closed: helpers must not write to it
        self._close_lock = threading.Lock()

    @property
    def config_dirs(self) -> list[Path]:
        """Every config dir a task used (one per concurrency slot)."""
        return [taskspace.config_slot(self._ctx.run_dir, n) for n in range(self._slot_count)]

    def run(self) -> None:
        sched.short_slice_for_this_thread()
        try:
            for node in self._nodes:
                if node.waiting == 0:
                    node.stage.ready.append(node)
            while self._left:
                self._check_abort()
                self._dispatch()
                if not self._left:
                    break
                if not self._active:
                    raise RuntimeError("the task graph stalled: no task can run")  # a bug
                self._turn()
        finally:
            self._close()

    def _abort(self) -> str | None:
        return self._abort_reason() or self._fail_fast

    # --- deciding what runs ----------------------------------------------------------
    def _dispatch(self) -> None:
        """Start (or, while aborting, skip) ready tasks until none more can go; a skip
        can make more tasks ready, in any stage."""
        progress = True
        while progress:
            progress = False
            reason = self._abort()
            for stage in self._stages:
                while stage.ready and (
                    reason is not None
                    or (stage.running < stage.limit and len(self._active) < self._limit)
                ):
                    node = stage.ready.popleft()
                    self._stage_started(stage)
                    progress = True
                    if reason is not None:
                        node.run.skip(reason)
                        self._node_done(node)
                    else:
                        self._start(node)

    def _stage_started(self, stage: Stage) -> None:
        if stage.started is not None:
            return
        stage.started = time.monotonic()
        ctx = self._ctx
        ctx.writer.emit(
            StageStart(
                plan_run_id=ctx.plan_run_id,
                stage_id=stage.id,
                mode=stage.mode,
                max_parallel=stage.max_parallel,
                task_count=len(stage.nodes),
            )
        )

    def _node_done(self, node: Node) -> None:
        node.done = True
        self._left -= 1
        run = node.run
        if (
            self._fail_fast is None
            and run.result.status == TaskStatus.FAILED
            and run.task.on_error == "fail_fast"
        ):
            self._fail_fast = f"fail_fast: task {run.task.stage_id}/{run.task.id} failed"
        stage = node.stage
        stage.left -= 1
        if stage.left == 0:
            self._stage_finished(stage)
        for dependent in node.dependents:
            dependent.waiting -= 1
            if dependent.waiting == 0:
                dependent.stage.ready.append(dependent)

    def _stage_finished(self, stage: Stage) -> None:
        ctx = self._ctx
        procs.kill_marked(marker_of(ctx.plan_run_id, stage.id), prefix=True)
        results = [n.run.result for n in stage.nodes]
        started = stage.started if stage.started is not None else time.monotonic()
        ctx.writer.emit(
            StageFinish(
                plan_run_id=ctx.plan_run_id,
                stage_id=stage.id,
                status=overall_status(results, cancelled=ctx.cancel.is_set()),
                duration_s=round(time.monotonic() - started, 3),
                counts=counts(results),
            )
        )

    def _check_abort(self) -> None:
        reason = self._abort()
        if reason is None or self._cancelled_all:
            return
        self._cancelled_all = True
        for node in self._active:
            node.run.cancel(reason)

    # --- one turn of the loop -----------------------------------------------------------
    def _turn(self) -> None:
        for key, _ in self._selector.select(self._timeout()):
            if key.fd == self._wake_r:
                self._take_posted()
            elif isinstance(key.data, _Running):
                entry = key.data
                if key.fd == entry.out_fd:
                    self._read(entry, key.fd, entry.node.run.feed)
                elif key.fd == entry.err_fd:
                    self._read(entry, key.fd, entry.node.run.feed_stderr)
                elif key.fd == entry.pid_fd:
                    self._exited(entry)
        self._check_timers()

    def _timeout(self) -> float:
        timeout = _POLL
        now = time.monotonic()
        for entry in self._running.values():
            if entry.pid_fd is None and not entry.open_pipes:
                timeout = min(timeout, _EXIT_POLL)
            if entry.drain_deadline is not None:
                timeout = min(timeout, max(0.0, entry.drain_deadline - now))
        return timeout

    def _check_timers(self) -> None:
        now = time.monotonic()
        for entry in list(self._running.values()):
            run, child = entry.node.run, entry.node.run.child
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
                    run.output_held_open(entry.open_pipes)
                    entry.drain_deadline = time.monotonic() + PIPE_DRAIN
                else:
                    run.note("the output was still held open after the kill: stopped reading it")
                    for fd in entry.open_pipes:
                        self._pipe_ended(entry, fd)

    # --- a task's way through the loop ----------------------------------------------------
    def _start(self, node: Node) -> None:
        self._slot_of[node] = self._take_slot()
        self._active.add(node)
        node.stage.running += 1
        run = node.run
        run.begin()
        if run.prepare_blocks:
            self._offload(node, lambda n: n.run.prepare(), self._launch)
        else:
            run.prepare()
            self._launch(node)

    def _take_slot(self) -> int:
        if self._free_slots:
            self._free_slots.sort()
            return self._free_slots.pop(0)
        self._slot_count += 1
        return self._slot_count - 1

    def _launch(self, node: Node) -> None:
        slot = self._slot_of[node]
        config_dir = taskspace.config_slot(self._ctx.run_dir, slot)
        fds = node.run.launch(config_dir, seed_config=not config_dir.exists())
        child = node.run.child
        if fds is None or child is None:
            self._complete(node, None)
            return
        out_fd, err_fd = fds
        entry = _Running(node, out_fd, err_fd, _pidfd(child.pid))
        self._running[node] = entry
        for fd in (out_fd, err_fd):
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ, entry)
        if entry.pid_fd is not None:
            self._selector.register(entry.pid_fd, selectors.EVENT_READ, entry)

    def _read(self, entry: _Running, fd: int, feed: Callable[[bytes], None]) -> None:
        run = entry.node.run
        try:
            n = os.readv(fd, [self._buffer[: run.read_size]])
        except BlockingIOError:
            return
        except OSError as exc:
            run.note(f"reading the CLI's output failed: {exc}")
            n = 0
        if n:
            feed(bytes(self._buffer[:n]))
        else:
            self._pipe_ended(entry, fd)

    def _pipe_ended(self, entry: _Running, fd: int) -> None:
        self._selector.unregister(fd)
        run = entry.node.run
        if fd == entry.out_fd:
            entry.out_fd = None
            run.output_closed()
        else:
            entry.err_fd = None
            run.stderr_closed()
        if entry.open_pipes:
            return
        entry.drain_deadline = None
        if run.returncode is not None:
            self._launched_done(entry)

    def _exited(self, entry: _Running) -> None:
        run = entry.node.run
        assert run.child is not None  # noqa: S101
        if entry.pid_fd is not None:
            self._selector.unregister(entry.pid_fd)
            os.close(entry.pid_fd)
            entry.pid_fd = None
        run.returncode = run.child.wait()  # exited: returns at once
        if not entry.open_pipes:
            self._launched_done(entry)
        else:
            entry.drain_deadline = time.monotonic() + PIPE_DRAIN

    def _launched_done(self, entry: _Running) -> None:
        del self._running[entry.node]
        self._complete(entry.node, entry.node.run.returncode)

    def _complete(self, node: Node, returncode: int | None) -> None:
        run = node.run
        run.settle(returncode)
        if run.conclude_blocks:
            self._offload(node, lambda n: n.run.conclude(), self._finish)
        else:
            run.conclude()
            self._finish(node)

    def _finish(self, node: Node) -> None:
        node.run.finish()
        self._active.discard(node)
        node.stage.running -= 1
        self._free_slots.append(self._slot_of.pop(node))
        self._node_done(node)

    # --- helper threads -------------------------------------------------------------------
    def _offload(
        self, node: Node, step: Callable[[Node], None], then: Callable[[Node], None]
    ) -> None:
        """Run ``step(node)`` in a helper thread, then ``then(node)`` back in the loop."""

        def work() -> None:
            try:
                step(node)  # steps never raise
            finally:
                self._posted.put((node, then))
                with self._close_lock:
                    if not self._closed:
                        with contextlib.suppress(BlockingIOError):  # one is pending anyway
                            os.write(self._wake_w, b"\0")

        threading.Thread(target=work, name=f"task-{node.run.task.id}", daemon=True).start()

    def _take_posted(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        while True:
            try:
                node, then = self._posted.get_nowait()
            except queue.Empty:
                return
            then(node)

    # --- the end ----------------------------------------------------------------------------
    def _close(self) -> None:
        """Normally nothing is left; after an internal error, stop what still runs."""
        for entry in list(self._running.values()):
            run = entry.node.run
            child = run.child
            if child is not None and child.poll() is None:
                proc.stop(child, grace=STOP_GRACE)
            if entry.out_fd is not None:
                run.output_closed()
            if entry.err_fd is not None:
                run.stderr_closed()
            if entry.pid_fd is not None:
                os.close(entry.pid_fd)
        self._selector.close()
        with self._close_lock:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)
