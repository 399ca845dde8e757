"""Pipeline events: the versioned contract on stdout, and their one writer.

Every event is one JSON object on one line, with ``type``, ``ts`` (UTC, ISO 8601 with
milliseconds), ``schema_version`` and ``plan_run_id`` first, then ``stage_id`` /
``task_id`` where they apply, then the event's own fields. ``EVENT_KEYS`` pins the keys
of each type (tests/test_pipeline_events.py checks it); renaming one is a schema change.

The ``EventWriter`` is the single writer: a lock serialises lines from task threads,
each line goes to ``events.jsonl`` in the run directory and to ``out`` (flushed, so
consumers see events live), after secrets are masked. Neither sink can stop the run: a
consumer that closes stdout (``| head -1``) or a full disk under the run directory is
reported once on stderr and that sink is dropped; the agents go on and the other sink
stays complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from claude_runner.pipeline.stream import write_all
from claude_runner.redact import Redactor

if TYPE_CHECKING:
    from claude_runner.pipeline.result import TaskResult

SCHEMA_VERSION = 1
_PREFIX = "pipeline_event."
_ENVELOPE = ("type", "ts", "schema_version", "plan_run_id")
# One compact encoder (json.dumps builds a new one per call when given options).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class Event:
    """Common envelope; subclasses add their fields and set ``TYPE``."""

    TYPE: ClassVar[str] = ""
    plan_run_id: str
    ts: str = field(default_factory=utc_now)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.TYPE,
            "ts": self.ts,
            "schema_version": SCHEMA_VERSION,
            "plan_run_id": self.plan_run_id,
        }
        for name in EVENT_KEYS[self.TYPE][len(_ENVELOPE) :]:  # not fields(): slow
            body[name] = getattr(self, name)
        return body


@dataclass(frozen=True, kw_only=True)
class PlanStart(Event):
    TYPE: ClassVar[str] = _PREFIX + "plan_start"
    plan_path: str
    workspace: str
    run_dir: str
    stage_count: int
    task_count: int
    version: str = "v1"
    rehearsal: bool = False
    max_concurrency: int | None = None
    budget_usd: float | None = None
    # How this run makes worktree / snapshot_ro workspaces (None: no such task):
    # {"worktree": method, "snapshot_ro": method, "read_only": guarantee, "notes": [...]}
    workspace_methods: dict[str, object] | None = None


@dataclass(frozen=True, kw_only=True)
class StageStart(Event):
    TYPE: ClassVar[str] = _PREFIX + "stage_start"
    stage_id: str
    mode: str
    max_parallel: int | None
    task_count: int


@dataclass(frozen=True, kw_only=True)
class TaskStart(Event):
    TYPE: ClassVar[str] = _PREFIX + "task_start"
    stage_id: str
    task_id: str
    model: str | None
    workspace_mode: str
    workspace: str
    log: str
    workspace_method: str
    read_only: str | None
    attempt: int = 1
    instance_of: str | None = None


@dataclass(frozen=True, kw_only=True)
class TaskRetry(Event):
    """A failed attempt is tried again after ``delay_s``; ``attempt`` is the next one."""

    TYPE: ClassVar[str] = _PREFIX + "task_retry"
    stage_id: str
    task_id: str
    attempt: int
    kind: str | None
    delay_s: float
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class TaskCheck(Event):
    """One run of a task's verify gate."""

    TYPE: ClassVar[str] = _PREFIX + "task_check"
    stage_id: str
    task_id: str
    attempt: int
    exit_code: int | None
    duration_s: float
    passed: bool
    log: str


@dataclass(frozen=True, kw_only=True)
class TaskSessionBind(Event):
    TYPE: ClassVar[str] = _PREFIX + "task_session_bind"
    stage_id: str
    task_id: str
    session_id: str


@dataclass(frozen=True, kw_only=True)
class TaskOutput(Event):
    """One line of agent output: ``message`` when it is a JSON object, else ``raw``."""

    TYPE: ClassVar[str] = _PREFIX + "task_output"
    stage_id: str
    task_id: str
    message: dict[str, Any] | None
    raw: str | None


@dataclass(frozen=True, kw_only=True)
class TaskFinish(Event):
    TYPE: ClassVar[str] = _PREFIX + "task_finish"
    stage_id: str
    task_id: str
    status: str
    failure_kind: str | None
    exit_code: int | None
    signal: str | None
    is_error: bool | None
    reason: str | None
    duration_s: float
    session_id: str | None
    branch: str | None
    patch: str | None
    changed_files: int | None
    secrets_in_changes: list[str]
    attempts: int
    cost_usd: float | None

    @classmethod
    def of(cls, plan_run_id: str, res: TaskResult) -> TaskFinish:
        """The event of a finished task: the result's fields of the same names, the
        number of attempts and the cost."""
        derived: dict[str, Any] = {"attempts": len(res.attempts), "cost_usd": res.total_cost_usd}
        own = EVENT_KEYS[cls.TYPE][len(_ENVELOPE) :]
        return cls(
            plan_run_id=plan_run_id,
            **{name: derived[name] if name in derived else getattr(res, name) for name in own},
        )


@dataclass(frozen=True, kw_only=True)
class StageFinish(Event):
    TYPE: ClassVar[str] = _PREFIX + "stage_finish"
    stage_id: str
    status: str
    duration_s: float
    counts: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class PlanFinish(Event):
    TYPE: ClassVar[str] = _PREFIX + "plan_finish"
    status: str
    duration_s: float
    counts: dict[str, int]


EVENT_TYPES: tuple[type[Event], ...] = (
    PlanStart,
    StageStart,
    TaskStart,
    TaskSessionBind,
    TaskOutput,
    TaskRetry,
    TaskCheck,
    TaskFinish,
    StageFinish,
    PlanFinish,
)
EVENT_KEYS: dict[str, tuple[str, ...]] = {
    cls.TYPE: _ENVELOPE + tuple(f.name for f in fields(cls) if f.name not in _ENVELOPE)
    for cls in EVENT_TYPES
}


Listener = Callable[[dict[str, Any]], None]


class EventWriter:
    """Thread-safe single writer of event lines to ``events.jsonl`` and ``out``;
    ``listeners`` (progress views, exporters) get each event after masking."""

    def __init__(
        self,
        out: TextIO,
        jsonl: Path,
        redact: Redactor,
        *,
        warn: Callable[[str], None],
        listeners: tuple[Listener, ...] = (),
        rehearsal: bool = False,
    ) -> None:
        self._out: TextIO | None = out
        # One write(2) per line and no buffer: nothing is lost if the runner is killed.
        self._fd = os.open(jsonl, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._jsonl = jsonl
        self._redact = redact
        self._warn = warn
        self._listeners = listeners
        # A rehearsal's every event says so, in case its lines end up beside real ones.
        self._extra = {"rehearsal": True} if rehearsal else None
        self._lock = threading.Lock()
        self.problems: list[str] = []  # what went wrong with a sink, for the result

    def emit(self, event: Event) -> None:
        self.emit_dict(event.to_dict())

    def emit_dict(self, body: dict[str, Any]) -> None:
        if self._extra is not None:
            body = {**body, **self._extra}
        line = self._redact(_ENCODE(body)) + "\n"
        try:
            data = line.encode()
        except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape): keep it escaped
            data = line.encode("utf-8", "backslashreplace")
            line = data.decode()
        with self._lock:
            self._to_file(data)
            self._to_out(line)
        if self._listeners:
            masked = json.loads(line)
            for listener in self._listeners:
                listener(masked)

    def _to_file(self, data: bytes) -> None:
        if self._fd < 0:
            return
        try:
            write_all(self._fd, data)
        except OSError as exc:
            why = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror
            self._drop_file(f"cannot write {self._jsonl} ({why}): later events are only on stdout")

    def _drop_file(self, problem: str) -> None:
        os.close(self._fd)
        self._fd = -1
        self.problems.append(problem)
        self._warn(problem)

    def _to_out(self, line: str) -> None:
        out = self._out
        if out is None:
            return
        try:
            out.write(line)
            out.flush()
        except BrokenPipeError:
            # The consumer went away (`| head -1`). The run goes on; point the descriptor
            # at /dev/null so the interpreter's own flush at exit does not fail either.
            self._out = None
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, out.fileno())
                os.close(devnull)
            problem = (
                "stdout was closed by its reader: the run goes on, events are still "
                f"written to {self._jsonl}"
            )
            self.problems.append(problem)
            self._warn(problem)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
