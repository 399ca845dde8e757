"""The run's scheduler: one thread runs every task of the plan as a graph.

Stages compile into a graph (``graph.py``): a task waits for the tasks it needs and
becomes ready when they are all done. Ready tasks start in plan order within each
stage's ``max_parallel`` and the run's limit: the plan's ``max_concurrency``, lowered
while the API answers 429 (``pressure.py``), and a plan ``budget_usd`` that must have
room for the task's reservation (``budget.py``). A concurrency slot is a
``CLAUDE_CONFIG_DIR``, held by one task at a time for its whole attempt (its verify-gate
rounds continue the same session, which lives there). A failed attempt that may be
retried gives its slot back and waits out its backoff before it queues again. A task
that is ready while the run is aborting (a signal, a ``fail_fast`` failure, the plan's
timeout) is skipped instead, so every task gets exactly one ``task_finish`` and always
after the tasks it needs. A stage's ``stage_start`` comes with its first task decided,
its ``stage_finish`` with its last task done; for a v1 plan (each stage needs the whole
previous one) this is exactly the old order: stage after stage.

Timers, checked at every turn over the active tasks: an attempt's ``timeout`` (the whole
attempt: copy, CLI, checks), its ``idle_timeout`` (no output from the CLI), a CLI that
printed its result but does not exit (``RESULT_GRACE``), the plan's ``timeout``.

The same thread reads every running CLI's stdout and stderr (non-blocking pipes in one
selector), learns of their exits (a pidfd per CLI, or polling where the kernel has none),
and hands the steps that may block to short-lived helper threads that post back through
a wake-up pipe: a workspace copy, a verify gate, git and a /proc sweep, and the start of
each attempt's CLI. One thread instead of a thread per task: with 16 threads blocked in
reads, every chunk and exit was a fight for the GIL, and the scheduling alone cost more
CPU than the agents it ran. The CLI starts in a helper because starting a process blocks
the thread that starts it (``vfork``) until the child has exec'd, and the child must
first get a CPU: on a busy machine (load 18 on 2 cores) that was 31 ms per spawn, most
of a 1,000-task run's wall time spent with the loop stopped; a helper thread waits
without the GIL, and the starts of several tasks overlap.

A CLI that has exited while a process it started still holds one of its pipes open gets
``PIPE_DRAIN`` seconds; then the task's marked processes and whatever holds the pipe are
killed, and if the pipe is still open another ``PIPE_DRAIN`` later (a process of another
user), the scheduler stops reading it: the task ends with what it has.
"""

from __future__ import annotations

import _thread
import contextlib
import heapq
import itertools
import os
import queue
import selectors
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from claude_runner import proc, procs, sched
from claude_runner.pipeline import taskspace
from claude_runner.pipeline.budget import Budget
from claude_runner.pipeline.clirun import CliRun
from claude_runner.pipeline.context import RunContext, marker_of
from claude_runner.pipeline.events import StageFinish, StageStart
from claude_runner.pipeline.graph import Expand, Node, Semantics, Skip, Stage
from claude_runner.pipeline.pressure import Pressure
from claude_runner.pipeline.result import counts, overall_status
from claude_runner.pipeline.state import FailureKind, TaskStatus
from claude_runner.pipeline.task import STOP_GRACE

PIPE_DRAIN = 5.0
RESULT_GRACE = 10.0  # a CLI that printed its result gets this long to exit
_POLL = 0.05  # how often the loop looks at the cancel flag and its timers
_EXIT_POLL = 0.005  # without pidfds: how often an exit is looked for after EOF
_READ_SIZE = 1024 * 1024


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # old kernel, or a seccomp profile refusing it
        return None


@dataclass(frozen=True)
class Abort:
    """Why no task may start any more, and what that makes of the rest."""

    reason: str
    kind: FailureKind  # for the tasks it skips or stops


class _Running:
    """The scheduler's view of one launched CLI."""

    __slots__ = ("cli", "drain_deadline", "drained_once", "err_fd", "node", "out_fd", "pid_fd")

    def __init__(self, node: Node, cli: CliRun, pid_fd: int | None) -> None:
        self.node = node
        self.cli = cli
        self.out_fd: int | None = cli.out_fd  # None once the output ended
        self.err_fd: int | None = cli.err_pipe
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
        semantics: Semantics,
        *,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        budget: Budget | None = None,
    ) -> None:
        self._stages = list(stages)
        self._nodes = [n for s in stages for n in s.nodes]
        self._ctx = ctx
        self._semantics = semantics
        self.pressure = Pressure(max_concurrency or max(1, len(self._nodes)))
        self.budget = budget
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._fail_fast: Abort | None = None
        self._left = len(self._nodes)
        self._free_slots: list[int] = []
        self._slot_count = 0
        self._slot_of: dict[Node, int] = {}
        self._active: set[Node] = set()  # holding a slot: an attempt under way
        self._running: dict[Node, _Running] = {}  # a CLI launched, exit or output pending
        self._timers: list[tuple[float, int, Node]] = []  # retry backoffs
        self._seq = itertools.count()
        self._posted: queue.SimpleQueue[tuple[Node, Callable[[Node], None]]] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._buffer = memoryview(bytearray(_READ_SIZE))
        self._aborted: Abort | None = None
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
                if not self._active and not self._timers:
                    raise RuntimeError("the task graph stalled: no task can run")  # a bug
                self._turn()
        finally:
            self._close()

    # --- aborting ---------------------------------------------------------------------------
    def _abort(self) -> Abort | None:
        if self._ctx.cancel.is_set():
            return Abort("cancelled by a signal to the runner", FailureKind.CANCELLED)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return Abort(f"the plan's timeout ({self._timeout:g} s) expired", FailureKind.TIMEOUT)
        return self._fail_fast

    def _check_abort(self) -> None:
        abort = self._abort()
        if abort is None or self._aborted is not None:
            return
        self._aborted = abort
        for node in self._active:
            if abort.kind == FailureKind.TIMEOUT:
                node.run.time_out(FailureKind.TIMEOUT, abort.reason)
            node.run.cancel(abort.reason, abort.kind)
        for _, _, node in self._timers:  # waiting to retry: the last attempt stands
            node.backoff = False
            node.run.note(f"not retried: {abort.reason}")
            self._task_done(node)
        self._timers.clear()

    # --- deciding what runs ----------------------------------------------------------------
    def _limit(self) -> int:
        return self.pressure.limit

    def _dispatch(self) -> None:
        """Start (or skip) ready tasks until none more can go; a skip can make more
        tasks ready, in any stage."""
        progress = True
        while progress:
            progress = False
            abort = self._abort()
            for stage in self._stages:
                while stage.ready and (
                    abort is not None
                    or (stage.running < stage.limit and len(self._active) < self._limit())
                ):
                    node = stage.ready[0]
                    if abort is not None and not self._survives(node, abort):
                        stage.ready.popleft()
                        self._stage_started(stage)
                        self._skip(node, abort.reason, abort.kind)
                    elif not self._decide(node):
                        break
                    progress = True

    def _skip(self, node: Node, reason: str, kind: FailureKind | None) -> None:
        """The node will not (again) start: a task with an attempt behind it keeps that
        attempt's outcome."""
        if node.run.attempt:
            node.run.note(f"not retried: {reason}")
            self._task_done(node)
        else:
            node.run.skip(reason, kind)
            self._node_done(node)

    def _survives(self, node: Node, abort: Abort) -> bool:
        """A ``when: always()`` task still runs after a ``fail_fast`` (not after a signal
        or the plan's timeout)."""
        return (
            abort is self._fail_fast
            and not node.run.attempt
            and (self._semantics.runs_after_abort(node))
        )

    def _decide(self, node: Node) -> bool:
        """Run, skip or fan out the node at the head of its stage's queue; False when it
        must wait (the budget has no room yet)."""
        stage = node.stage
        if not node.decided:
            decision = self._semantics.decide(node)
            if isinstance(decision, Skip):
                stage.ready.popleft()
                self._stage_started(stage)
                self._skip(node, decision.reason, decision.kind)
                return True
            if isinstance(decision, Expand):
                stage.ready.popleft()
                self._stage_started(stage)
                self._expand(node, decision.items)
                return True
            node.decided = True
        return self._start(node)

    def _expand(self, node: Node, items: list[object]) -> None:
        instances = self._semantics.instances(node, items)
        if not instances:
            node.run.skip("for_each gave no items", None)
            self._node_done(node)
            return
        stage = node.stage
        at = stage.nodes.index(node) + 1
        stage.nodes[at:at] = instances
        stage.left += len(instances)
        self._left += len(instances)
        stage.ready.extendleft(reversed(instances))

    def _start(self, node: Node) -> bool:
        """Start the node's next attempt; False when it must wait (budget)."""
        cap = None
        if self.budget is not None:
            cap = self.budget.reserve(
                node,
                cap=node.run.task.controls.max_budget_usd,
                free_slots=self._limit() - len(self._active),
            )
            if cap is None:
                if self._active:
                    return False  # running tasks may give some back
                node.stage.ready.popleft()
                self._stage_started(node.stage)
                self._skip(node, "the plan's budget_usd is spent", FailureKind.BUDGET)
                return True
        node.stage.ready.popleft()
        self._stage_started(node.stage)
        self._slot_of[node] = self._take_slot()
        self._active.add(node)
        node.stage.running += 1
        node.run.begin()
        config_dir = taskspace.config_slot(self._ctx.run_dir, self._slot_of[node])
        self._offload(node, lambda n: self._launch(n, config_dir, cap), self._launched)
        return True

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
            and node.instances is None
            and run.result.status == TaskStatus.FAILED
            and run.task.on_error == "fail_fast"
        ):
            self._fail_fast = Abort(
                f"fail_fast: task {run.task.stage_id}/{run.task.id} failed", FailureKind.CANCELLED
            )
        stage = node.stage
        stage.left -= 1
        if stage.left == 0:
            self._stage_finished(stage)
        self._release(node)
        parent = node.parent
        if parent is not None:
            parent.left_instances -= 1
            if parent.left_instances == 0:
                self._node_done(parent)

    def _release(self, node: Node) -> None:
        """``node`` is done: its dependents wait for one task less (a barrier whose
        tasks are all done is done at once)."""
        for dependent in node.dependents:
            dependent.waiting -= 1
            if dependent.waiting:
                continue
            if dependent.barrier:
                dependent.done = True
                dependent.failed_upstream = any(n.failed_upstream for n in dependent.needs)
                self._release(dependent)
            else:
                dependent.stage.ready.append(dependent)

    def _stage_finished(self, stage: Stage) -> None:
        ctx = self._ctx
        procs.kill_marked(marker_of(ctx.plan_run_id, stage.id), prefix=True)
        results = [n.result for n in stage.nodes if not n.instances]
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

    # --- one turn of the loop -----------------------------------------------------------
    def _turn(self) -> None:
        for key, _ in self._selector.select(self._wait()):
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

    def _wait(self) -> float:
        wait = _POLL
        now = time.monotonic()
        for entry in self._running.values():
            if entry.pid_fd is None and not entry.open_pipes:
                wait = min(wait, _EXIT_POLL)
            if entry.drain_deadline is not None:
                wait = min(wait, max(0.0, entry.drain_deadline - now))
        if self._timers:
            wait = min(wait, max(0.0, self._timers[0][0] - now))
        return wait

    def _check_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, node = heapq.heappop(self._timers)
            node.backoff = False
            node.stage.ready.appendleft(node)  # a retry goes before tasks not yet begun
        for node in list(self._active):
            self._check_limits(node, now)
        for entry in list(self._running.values()):
            run, child = entry.node.run, entry.cli.child
            # No pidfd: poll at every turn (at least every _EXIT_POLL after EOF, every
            # _POLL before).
            if entry.pid_fd is None and entry.cli.returncode is None and child.poll() is not None:
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

    def _check_limits(self, node: Node, now: float) -> None:
        """The attempt's timeout and idle timeout; a CLI that does not exit after its
        result."""
        run, task = node.run, node.run.task
        if task.timeout_s and now - run.attempt_started >= task.timeout_s:
            run.time_out(
                FailureKind.TIMEOUT, f"the attempt's timeout ({task.timeout_s:g} s) expired"
            )
        cli = run.cli
        if cli is None or cli.returncode is not None:
            return
        if task.idle_timeout_s and now - cli.last_output >= task.idle_timeout_s:
            run.time_out(
                FailureKind.IDLE_TIMEOUT,
                f"no output from the CLI for {task.idle_timeout_s:g} s (idle_timeout)",
            )
        elif (
            cli.result_at is not None
            and now - cli.result_at >= RESULT_GRACE
            and cli.child.poll() is None
        ):
            cli.result_at = None  # once
            run.stop_after_result()

    # --- a task's way through the loop ----------------------------------------------------
    def _take_slot(self) -> int:
        if self._free_slots:
            self._free_slots.sort()
            return self._free_slots.pop(0)
        self._slot_count += 1
        return self._slot_count - 1

    @staticmethod
    def _launch(node: Node, config_dir: Path, cap: float | None) -> None:
        """In a helper thread: prepare the attempt and start its CLI."""
        run = node.run
        run.prepare()
        run.launch(config_dir, seed_config=not config_dir.exists(), budget_cap=cap)

    def _launched(self, node: Node) -> None:
        node.run.launched()
        self._watch(node, node.run.cli)

    def _watch(self, node: Node, cli: CliRun | None) -> None:
        if cli is None:
            self._after_cli(node)
            return
        entry = _Running(node, cli, _pidfd(cli.child.pid))
        self._running[node] = entry
        for fd in entry.open_pipes:
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
        if entry.cli.returncode is not None:
            self._cli_done(entry)

    def _exited(self, entry: _Running) -> None:
        if entry.pid_fd is not None:
            self._selector.unregister(entry.pid_fd)
            os.close(entry.pid_fd)
            entry.pid_fd = None
        entry.cli.returncode = entry.cli.child.wait()  # exited: returns at once
        if not entry.open_pipes:
            self._cli_done(entry)
        else:
            entry.drain_deadline = time.monotonic() + PIPE_DRAIN

    def _cli_done(self, entry: _Running) -> None:
        del self._running[entry.node]
        if self._running:  # a 429 now is (also) the run's own load: see TaskRun._free
            entry.node.run.ended_crowded()
        returncode = entry.cli.returncode
        assert returncode is not None  # noqa: S101
        entry.node.run.cli_exited(returncode)
        self._after_cli(entry.node)

    def _after_cli(self, node: Node) -> None:
        if node.run.wants_check:
            self._offload(node, lambda n: n.run.check(), self._after_check)
        else:
            self._conclude(node)

    def _after_check(self, node: Node) -> None:
        if node.run.wants_continue:
            self._watch(node, node.run.continue_session())
        else:
            self._conclude(node)

    def _conclude(self, node: Node) -> None:
        if node.run.conclude_blocks:
            self._offload(node, lambda n: n.run.conclude(), self._attempt_over)
        else:
            node.run.conclude()
            self._attempt_over(node)

    def _attempt_over(self, node: Node) -> None:
        run = node.run
        delay = run.end_attempt()
        cost, estimated = run.attempt_spend
        if self.budget is not None:
            self.budget.settle(node, cost=cost, estimated=estimated)
        if run.result.failure_kind == FailureKind.RATE_LIMITED:
            self.pressure.rate_limited(still_running=len(self._running))
        elif run.result.status == TaskStatus.SUCCEEDED:
            self.pressure.succeeded()
        self._active.discard(node)
        node.stage.running -= 1
        self._free_slots.append(self._slot_of.pop(node))
        if delay is not None and self._abort() is None:
            run.retry(delay)
            node.backoff = True
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), node))
            return
        self._task_done(node)

    def _task_done(self, node: Node) -> None:
        node.run.finish()
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

        # The low-level start: threading.Thread.start() waits until the new thread runs,
        # and on a busy machine that kept the loop stopped ~1.6 ms per task. Like a
        # daemon thread, it does not hold up the interpreter's exit.
        _thread.start_new_thread(work, ())

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
            child = entry.cli.child
            if child.poll() is None:
                proc.stop(child, grace=STOP_GRACE)
            if entry.out_fd is not None:
                entry.node.run.output_closed()
            if entry.err_fd is not None:
                entry.node.run.stderr_closed()
            if entry.pid_fd is not None:
                os.close(entry.pid_fd)
        self._selector.close()
        with self._close_lock:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)
