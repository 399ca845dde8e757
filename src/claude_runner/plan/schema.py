"""The plan format as JSON Schema, and the resolved plan as a ``--dry-run`` document.

The repository ships the schemas as ``schema/plan-v1.schema.json`` and
``schema/plan-v2.schema.json``; regenerate them with
``python -m claude_runner.plan.schema v1 > schema/plan-v1.schema.json`` (and ``v2``); a
test fails when a file and the models drift apart.

Editors, Python's jsonschema and the loader agree on every plan (tests/test_plan_agreement
checks it with Ajv too): the patterns are written to mean the same in ECMA-262 and
Python. What the schema cannot state, only the loader refuses: YAML-level problems
(duplicate keys, tags), ids unique across items (also ignoring case), the parallel +
shared guard (it spans defaults, stage and task), the plan-wide task count, lengths in
bytes, and 2.0 as a whole number (JSON has one number type); in v2 also the task graph
(refs, cycles), templates, for_each against max_instances, limits in bytes and a week,
and output_schema's patterns in Python's dialect. A prompt file's content is checked
when its task starts.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from claude_runner.plan.models import Plan
from claude_runner.plan.models_v2 import PlanV2
from claude_runner.plan.resolved import ConfigSource, Rehearse, ResolvedPlan, ResolvedTask

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_VERSIONS = ("v1", "v2")
DEFAULT_SCHEMA_VERSION = "v2"
DRY_RUN_FORMAT = "claude-runner.dry-run.v1"


def plan_json_schema(version: str = DEFAULT_SCHEMA_VERSION) -> dict[str, object]:
    """JSON Schema (draft 2020-12) of a ``version`` plan, generated from the models.

    ``--print-schema [v1|v2]`` prints it (v2 by default); the repository ships both as
    ``schema/plan-<version>.schema.json``."""
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"no schema for plan version {version!r}; use v1 or v2")
    model = Plan if version == "v1" else PlanV2
    body = model.model_json_schema(mode="validation")
    head: dict[str, object] = {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:claude-runner:schema:plan-{version}",
    }
    return head | body


def schema_text(version: str = DEFAULT_SCHEMA_VERSION) -> str:
    """The schema as the shipped file holds it (what ``--print-schema`` writes)."""
    return json.dumps(plan_json_schema(version), indent=2) + "\n"


def _plain(value: object) -> object:
    """Tuples as lists, recursively: the document equals its own JSON round trip."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _key(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def _config(source: ConfigSource | None) -> dict[str, object] | None:
    if source is None:
        return None
    if source.file is not None:
        return {"file": source.file}
    # Inline configs may hold credentials (an MCP server's env): their keys only.
    inline = json.loads(source.inline_json or "{}")
    return {"inline_keys": sorted(inline) if isinstance(inline, dict) else []}


def _rehearse(script: Rehearse | None) -> dict[str, object] | None:
    if script is None:
        return None
    doc = asdict(script)
    doc["tools"] = [{tool: json.loads(given)} for tool, given in script.tools]
    doc["output"] = None if script.output_json is None else json.loads(script.output_json)
    del doc["output_json"]
    return doc


def _task(task: ResolvedTask) -> dict[str, object]:
    prompt: dict[str, str | None] = (
        {"file": task.prompt.file} if task.prompt.file is not None else {"text": task.prompt.text}
    )
    controls: dict[str, object] = asdict(task.controls)
    controls["mcp_config"] = _config(task.controls.mcp_config)
    controls["settings"] = _config(task.controls.settings)
    doc = {
        "id": task.id,
        "line": task.line,
        "needs": [_key(k) for k in task.needs],
        "layer": task.layer,
        "model": task.model,
        "verbosity": task.verbosity,
        "workspace": task.workspace,
        "on_error": task.on_error,
        "read_only": task.read_only,
        "allow_shared_writes": task.allow_shared_writes,
        "prompt": prompt,
        "when": task.when,
        "for_each": list(task.for_each) if isinstance(task.for_each, tuple) else task.for_each,
        "max_instances": task.max_instances,
        "timeout_s": task.timeout_s,
        "idle_timeout_s": task.idle_timeout_s,
        "retries": asdict(task.retries),
        "check": None if task.check is None else asdict(task.check),
        "output_schema": task.output_schema,
        "env": [name for name, _ in task.env],  # names only: values may hold secrets
        "controls": controls,
        "rehearse": _rehearse(task.rehearse),
    }
    return {k: _plain(v) for k, v in doc.items()}


def dry_run_document(plan: ResolvedPlan, *, plan_path: Path) -> dict[str, object]:
    """The resolved plan as JSON-able data: what would run, with every effective setting.

    ``model`` is null where neither the plan nor ``--model`` names one (the Claude Code
    CLI's default applies); a prompt is ``{"text": ...}`` or ``{"file": path}``, the file
    being read from the workspace when its task starts. Each task lists the tasks it
    needs (``stage/task``) and its topological layer. Durations are seconds (null: no
    limit). Environment variables are listed by name, inline configs by their keys: their
    values may hold credentials. Templates (``${{ }}``) are shown as written.
    """
    return {
        "format": DRY_RUN_FORMAT,
        "plan": str(plan_path),
        "version": plan.version,
        "max_concurrency": plan.max_concurrency,
        "timeout_s": plan.timeout_s,
        "budget_usd": plan.budget_usd,
        "layers": len(plan.layers()),
        "stages": [
            {
                "id": stage.id,
                "mode": stage.mode,
                "max_parallel": stage.max_parallel,
                "on_error": stage.on_error,
                "needs": [_key(k) for k in stage.needs],
                "tasks": [_task(task) for task in stage.tasks],
            }
            for stage in plan.stages
        ],
    }


def render_graph(plan: ResolvedPlan, fmt: Literal["mermaid", "dot"]) -> str:
    """The task graph as a Mermaid flowchart or a Graphviz digraph (``--graph``): one
    box per stage, an arrow from each need to the task that waits for it."""
    names = {task.key: f"t{n}" for n, task in enumerate(plan.tasks)}
    if fmt == "mermaid":
        lines = ["flowchart TD"]
        for s, stage in enumerate(plan.stages):
            lines.append(f'  subgraph s{s}["{_label(stage.id)}"]')
            lines += [f'    {names[t.key]}["{_label(t.id)}"]' for t in stage.tasks]
            lines.append("  end")
        lines += [f"  {names[n]} --> {names[t.key]}" for t in plan.tasks for n in t.needs]
        return "\n".join(lines) + "\n"
    if fmt != "dot":
        raise ValueError(f"no graph format {fmt!r}; use mermaid or dot")
    lines = ["digraph plan {", "  rankdir=TB;", "  node [shape=box];"]
    for s, stage in enumerate(plan.stages):
        lines.append(f'  subgraph cluster_{s} {{ label="{_label(stage.id)}";')
        lines += [f'    {names[t.key]} [label="{_label(t.id)}"];' for t in stage.tasks]
        lines.append("  }")
    lines += [f"  {names[n]} -> {names[t.key]};" for t in plan.tasks for n in t.needs]
    return "\n".join([*lines, "}"]) + "\n"


def _label(ident: str) -> str:
    # Ids are [A-Za-z0-9_.-]: nothing to escape in either format, but stay safe.
    return ident.replace("\\", "\\\\").replace('"', '\\"')


if __name__ == "__main__":
    # Same bytes as `claude-runner --print-schema [v1|v2]`.
    sys.stdout.write(schema_text(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SCHEMA_VERSION))
