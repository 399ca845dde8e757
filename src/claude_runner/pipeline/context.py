"""What every task of one run shares, and the marker its processes carry."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from claude_runner.pipeline.events import EventWriter
from claude_runner.pipeline.pricing import PriceTable
from claude_runner.reaper import Watchman
from claude_runner.redact import Redactor

if TYPE_CHECKING:
    from claude_runner.pipeline.preserve import Repository
    from claude_runner.pipeline.workspaces import Workspaces
    from claude_runner.progress import RunObserver
    from claude_runner.rehearsal import Rehearsal

TASK_MARKER = "CLAUDE_RUNNER_TASK"


@dataclass(frozen=True)
class RunContext:
    """What every task of one run shares."""

    plan_run_id: str
    run_dir: Path
    workspace: Path
    claude_bin: str
    env: Mapping[str, str]
    writer: EventWriter
    redactor: Redactor
    repo: Repository  # keeps worktree tasks' work (branch, patch)
    watchman: Watchman
    cancel: threading.Event
    prices: PriceTable = field(default_factory=lambda: PriceTable.load(None))
    rng: random.Random = field(default_factory=random.Random)
    track_usage: bool = False  # parse assistant messages (a budget)
    rehearsal: Rehearsal | None = None  # --rehearse: agents talk to the stand-in
    observers: RunObserver | None = None  # the live view, OpenTelemetry
    workspaces: Workspaces | None = None  # worktree / snapshot_ro workspaces (overlay...)


def marker_of(plan_run_id: str, stage_id: str = "", task_id: str = "") -> bytes:
    """The environment entry that marks a task's processes (a prefix for a stage or run:
    ``<run>/`` or ``<run>/<stage>/``; the trailing slash keeps ``a`` from matching ``ab``)."""
    value = f"{plan_run_id}/"
    if stage_id:
        value += f"{stage_id}/"
        if task_id:
            value += task_id
    return f"{TASK_MARKER}={value}".encode()
