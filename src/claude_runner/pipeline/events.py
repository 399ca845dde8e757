"""Pipeline events: the versioned contract on stdout, and their one writer.

Every event is one JSON object on one line, with ``type``, ``ts`` (UTC, ISO 8601 with
milliseconds), ``schema_version`` and ``plan_run_id`` first, then ``stage_id`` /
``task_id`` where they apply, then the event's own fields. ``EVENT_KEYS`` pins the keys
of each type (tests/test_pipeline_events.py checks it); renaming one is a schema change.

The ``EventWriter`` is the single writer: a lock serialises lines from task threads,
each line goes to ``out`` (flushed, so consumers see events live) and to
``events.jsonl`` in the run directory, after secrets are masked.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TextIO

from claude_runner.pipeline.stream import write_all
from claude_runner.redact import Redactor

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
    exit_code: int | None
    signal: str | None
    is_error: bool | None
    reason: str | None
    duration_s: float
    session_id: str | None
    branch: str | None
    patch: str | None
    changed_files: int | None


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
    TaskFinish,
    StageFinish,
    PlanFinish,
)
EVENT_KEYS: dict[str, tuple[str, ...]] = {
    cls.TYPE: _ENVELOPE + tuple(f.name for f in fields(cls) if f.name not in _ENVELOPE)
    for cls in EVENT_TYPES
}


class EventWriter:
    """Thread-safe single writer of event lines to ``out`` and ``events.jsonl``."""

    def __init__(self, out: TextIO, jsonl: Path, redact: Redactor) -> None:
        self._out = out
        # One write(2) per line and no buffer: nothing is lost if the runner is killed.
        self._fd = os.open(jsonl, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._redact = redact
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        self.emit_dict(event.to_dict())

    def emit_dict(self, body: dict[str, Any]) -> None:
        line = self._redact(_ENCODE(body)) + "\n"
        try:
            data = line.encode()
        except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape): keep it escaped
            data = line.encode("utf-8", "backslashreplace")
            line = data.decode()
        with self._lock:
            write_all(self._fd, data)
            self._out.write(line)
            self._out.flush()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
