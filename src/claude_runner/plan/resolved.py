"""The resolved plan the executor runs: one shape for v1 and v2 plans.

Every inherited setting is filled in, every ``needs`` resolved to task keys
``(stage_id, task_id)`` with the task's topological layer. A v1 plan resolves with v1's
meaning: no timeouts, no retries, no agent controls, ``when: always()`` (v1's
``on_error: continue`` runs every task whatever failed before), needs from stage order.
Templates (prompt, check.run, env values, for_each, when) are raw text, rendered at run
time. Durations are seconds; ``None`` means no limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Verbosity = Literal["text", "v", "vv"]
OnError = Literal["fail_fast", "continue"]
WorkspaceKind = Literal["shared", "worktree", "snapshot_ro"]
StageMode = Literal["sequential", "parallel"]
TaskKey = tuple[str, str]


@dataclass(frozen=True)
class PromptSource:
    """Where a task's prompt comes from: inline text or a workspace-relative file."""

    text: str | None
    file: str | None


@dataclass(frozen=True)
class Retries:
    """Attempts after the first, for which failure kinds, with exponential backoff (full
    jitter) from ``backoff_base_s`` up to ``backoff_max_s``."""

    max: int
    on: tuple[str, ...]
    backoff_base_s: float
    backoff_max_s: float


NO_RETRIES = Retries(max=0, on=(), backoff_base_s=0, backoff_max_s=0)


@dataclass(frozen=True)
class Check:
    """The verify gate: ``bash -c run`` after a successful result, up to ``attempts`` runs."""

    run: str  # template text
    attempts: int
    timeout_s: float | None  # None: only the task's own limits apply


@dataclass(frozen=True)
class ConfigSource:
    """A settings or MCP config: a workspace-relative file, or inline JSON text."""

    file: str | None
    inline_json: str | None


@dataclass(frozen=True)
class Controls:
    """Agent controls, each mapped to the CLI's own flag; None: not passed."""

    max_budget_usd: float | None = None
    max_turns: int | None = None
    allowed_tools: tuple[str, ...] | None = None
    disallowed_tools: tuple[str, ...] | None = None
    permission_mode: str | None = None  # None: --dangerously-skip-permissions, as v1
    append_system_prompt: str | None = None
    mcp_config: ConfigSource | None = None
    add_dirs: tuple[str, ...] | None = None
    effort: str | None = None
    fallback_model: str | None = None
    settings: ConfigSource | None = None


NO_CONTROLS = Controls()


@dataclass(frozen=True)
class RehearseError:
    status: int
    retry_after_s: int | None
    message: str | None


@dataclass(frozen=True)
class Rehearse:
    """What the built-in stand-in model answers for a task in a rehearsal."""

    tools: tuple[tuple[str, str], ...]  # (tool, JSON of its input), in call order
    result: str | None
    output_json: str | None
    error: RehearseError | None
    errors_before_success: int | None
    input_tokens: int | None
    output_tokens: int | None
    delay_s: int | None


@dataclass(frozen=True)
class ResolvedTask:
    """A task with every inherited setting filled in."""

    stage_id: str
    id: str
    model: str | None
    verbosity: Verbosity
    on_error: OnError
    workspace: WorkspaceKind
    read_only: bool
    allow_shared_writes: bool
    prompt: PromptSource
    line: int | None = None  # where the task starts in the plan file
    needs: tuple[TaskKey, ...] = ()
    layer: int = 0
    timeout_s: float | None = None
    idle_timeout_s: float | None = None
    retries: Retries = NO_RETRIES
    controls: Controls = NO_CONTROLS
    env: tuple[tuple[str, str], ...] = ()  # (NAME, template text), sorted by name
    check: Check | None = None
    when: str = "always()"
    for_each: tuple[object, ...] | str | None = None  # literal items, or one ${{ }}
    max_instances: int = 64
    output_schema_json: str | None = None  # compact JSON, for --json-schema
    rehearse: Rehearse | None = None

    @property
    def key(self) -> TaskKey:
        return (self.stage_id, self.id)

    @property
    def output_schema(self) -> object:
        return None if self.output_schema_json is None else json.loads(self.output_schema_json)


@dataclass(frozen=True)
class ResolvedStage:
    id: str
    mode: StageMode
    max_parallel: int | None
    on_error: OnError
    tasks: tuple[ResolvedTask, ...]
    needs: tuple[TaskKey, ...] = ()  # what every task of the stage waits for


@dataclass(frozen=True)
class ResolvedPlan:
    stages: tuple[ResolvedStage, ...]
    version: Literal["v1", "v2"] = "v1"
    max_concurrency: int | None = None
    timeout_s: float | None = None
    budget_usd: float | None = None

    @property
    def tasks(self) -> tuple[ResolvedTask, ...]:
        return tuple(t for s in self.stages for t in s.tasks)

    def layers(self) -> list[list[ResolvedTask]]:
        """Tasks grouped by topological layer, each group in plan order."""
        tasks = self.tasks
        out: list[list[ResolvedTask]] = [
            [] for _ in range(max((t.layer for t in tasks), default=-1) + 1)
        ]
        for task in tasks:
            out[task.layer].append(task)
        return out
