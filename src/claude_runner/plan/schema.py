"""The plan format as JSON Schema, and the resolved plan as a ``--dry-run`` document.

The repository ships the schema as ``schema/plan-v1.schema.json``; regenerate it with
``python -m claude_runner.plan.schema > schema/plan-v1.schema.json`` (a test fails when
the file and the models drift apart).

Editors, Python's jsonschema and the loader agree on every plan (tests/test_plan_agreement
checks it with Ajv too): the patterns are written to mean the same in ECMA-262 and
Python. What the schema cannot state, only the loader refuses: YAML-level problems
(duplicate keys, tags), ids unique across items (also ignoring case), the parallel +
shared guard (it spans defaults, stage and task), the plan-wide task count, lengths in
bytes, and 2.0 as a whole number (JSON has one number type). A prompt file's content is
checked when its task starts.
"""

from __future__ import annotations

import json
from pathlib import Path

from claude_runner.plan.models import Plan, ResolvedPlan, ResolvedTask

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:claude-runner:schema:plan-v1"
DRY_RUN_FORMAT = "claude-runner.dry-run.v1"


def plan_json_schema() -> dict[str, object]:
    """JSON Schema (draft 2020-12) of a v1 plan, generated from the models."""
    body = Plan.model_json_schema(mode="validation")
    head: dict[str, object] = {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID}
    return head | body


def _task(task: ResolvedTask) -> dict[str, object]:
    prompt: dict[str, str | None] = (
        {"file": task.prompt.file} if task.prompt.file is not None else {"text": task.prompt.text}
    )
    return {
        "id": task.id,
        "model": task.model,
        "verbosity": task.verbosity,
        "workspace": task.workspace,
        "on_error": task.on_error,
        "read_only": task.read_only,
        "allow_shared_writes": task.allow_shared_writes,
        "prompt": prompt,
    }


def dry_run_document(plan: ResolvedPlan, *, plan_path: Path) -> dict[str, object]:
    """The resolved plan as JSON-able data: what would run, with every effective setting.

    ``model`` is null where neither the plan nor ``--model`` names one (the Claude Code
    CLI's default applies); a prompt is ``{"text": ...}`` or ``{"file": path}``, the file
    being read from the workspace when its task starts.
    """
    return {
        "format": DRY_RUN_FORMAT,
        "plan": str(plan_path),
        "version": "v1",
        "stages": [
            {
                "id": stage.id,
                "mode": stage.mode,
                "max_parallel": stage.max_parallel,
                "on_error": stage.on_error,
                "tasks": [_task(task) for task in stage.tasks],
            }
            for stage in plan.stages
        ],
    }


if __name__ == "__main__":
    # Same bytes as `claude-runner --print-schema`.
    print(json.dumps(plan_json_schema(), indent=2))
