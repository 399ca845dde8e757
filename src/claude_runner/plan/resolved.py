"""The resolved plan: what the executor runs, one shape for v1 and v2 plans.

Every inherited setting is filled in (task > stage > ``--model`` > defaults > built-ins),
durations are seconds (``None``: no limit), refs are resolved to ``(stage_id, task_id)``.
A v1 plan resolves to the same shape with the v1 meaning: no timeouts, no retries, no
agent controls, each stage needing the whole previous one (``version == "v1"`` tells the
scheduler that those needs order the run but do not propagate failures: v1's
``continue`` runs everything).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Verbosity = Literal["text", "v", "vv"]
OnError = Literal["fail_fast", "continue"]
WorkspaceKind = Literal["shared", "worktree", "snapshot_ro"]
StageMode = Literal["sequential", "parallel"]
TaskKey = tuple[str, str]  # (stage_id, task_id)

# The failure kinds retried unless the plan says otherwise: the transient ones. Never an
# agent's own error, a budget or max_turns: retrying those spends again for the same end.
DEFAULT_RETRY_ON = frozenset({"rate_limited", "api_error", "crash", "idle_timeout"})


@dataclass(frozen=True)
class PromptSource:
    """Where a task's prompt comes from: inline text or a workspace-relative file."""

    text: str | None
    file: str | None


@dataclass(frozen=True)
class Retries:
    """How often a failed attempt is tried again, on which failure kinds, how soon."""

    max: int = 0
    on: frozenset[str] = DEFAULT_RETRY_ON
    backoff_base: float = 5.0
    backoff_max: float = 120.0


@dataclass(frozen=True)
class Check:
    """A verify gate: ``run`` (a template) must exit 0 after the agent's result."""

    run: str
    attempts: int = 3
    timeout: float | None = 600.0


@dataclass(frozen=True)
class AgentControls:
    """The CLI flags a plan may set for an agent (each maps to the CLI's own flag)."""

    allowed_tools: tuple[str, ...] | None = None
    disallowed_tools: tuple[str, ...] | None = None
    permission_mode: str | None = None
    append_system_prompt: str | None = None
    mcp_config: str | Mapping[str, Any] | None = None  # a workspace path or a mapping
    add_dirs: tuple[str, ...] | None = None
    effort: str | None = None
    fallback_model: str | None = None
    settings: str | Mapping[str, Any] | None = None  # a workspace path or a mapping
    env: Mapping[str, str] = field(default_factory=dict)  # values are templates
    max_turns: int | None = None
    max_budget_usd: float | None = None


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
    timeout: float | None = None  # per attempt
    idle_timeout: float | None = None
    retries: Retries = Retries()
    controls: AgentControls = AgentControls()
    needs: tuple[TaskKey, ...] = ()  # beyond the stage order (v2)
    when: str | None = None  # an expression; None: success()
    for_each: tuple[Any, ...] | str | None = None  # a literal list or an expression
    max_instances: int = 64
    output_schema: Mapping[str, Any] | None = None
    check: Check | None = None
    rehearse: Mapping[str, Any] | None = None
    line: int | None = None  # where the task starts in the plan file

    @property
    def key(self) -> TaskKey:
        return (self.stage_id, self.id)


@dataclass(frozen=True)
class ResolvedStage:
    id: str
    mode: StageMode
    max_parallel: int | None
    on_error: OnError
    tasks: tuple[ResolvedTask, ...]
    needs: tuple[TaskKey, ...] | None = None  # None: every task of the previous stage


@dataclass(frozen=True)
class ResolvedPlan:
    stages: tuple[ResolvedStage, ...]
    version: Literal["v1", "v2"] = "v1"
    max_concurrency: int | None = None
    timeout: float | None = None  # the whole run
    budget_usd: float | None = None

    @property
    def tasks(self) -> tuple[ResolvedTask, ...]:
        return tuple(t for s in self.stages for t in s.tasks)
