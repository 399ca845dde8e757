"""The run's state on disk, written as it goes, so that a finished, failed or killed run
can be reported, resumed or merged from its directory alone.

- ``run.json`` (at the start): the format, the runner's version, the plan run id, the
  plan file, the workspace, the start time, the plan's version, whether it is a
  rehearsal, and the SHA-256 of the resolved plan;
- ``plan.json`` (at the start): the resolved plan with its graph (the ``--dry-run``
  document);
- ``tasks/<stage>/<task>/result.json`` (at each ``task_finish``): the task's entry of the
  result, so what finished is known even if the runner is killed before the end;
- ``events.jsonl`` and ``result.json``: see ``events.py`` and ``executor.py``.

Every file is written whole to a temporary name and renamed: a reader never sees half a
file. Failures to write are reported by the caller and never stop the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from claude_runner import __version__
from claude_runner.pipeline.events import utc_now

RUN_FORMAT = "claude-runner.run.v1"
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def write_atomic(path: Path, text: str) -> None:
    """``text`` to ``path`` through a temporary file and a rename (raises OSError)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def start(
    run_dir: Path,
    *,
    plan_run_id: str,
    plan_path: Path,
    workspace: Path,
    plan_document: dict[str, Any],
    rehearsal: bool,
) -> None:
    """``run.json`` and ``plan.json`` (raises OSError)."""
    plan_text = _ENCODE(plan_document)
    write_atomic(run_dir / "plan.json", plan_text + "\n")
    run = {
        "format": RUN_FORMAT,
        "runner_version": __version__,
        "plan_run_id": plan_run_id,
        "plan_path": str(plan_path),
        "workspace": str(workspace),
        "started": utc_now(),
        "version": plan_document.get("version"),
        "rehearsal": rehearsal,
        "plan_sha256": hashlib.sha256(plan_text.encode()).hexdigest(),
    }
    write_atomic(run_dir / "run.json", _ENCODE(run) + "\n")


def task_finished(task_dir: Path, entry: dict[str, Any], redact: Callable[[str], str]) -> None:
    """The task's ``result.json`` (raises OSError)."""
    write_atomic(task_dir / "result.json", redact(_ENCODE(entry)) + "\n")
