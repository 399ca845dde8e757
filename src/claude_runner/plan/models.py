"""Pydantic models of the v1 pipeline plan, and the resolved plan the executor runs.

Settings cascade defaults -> stage -> task; the most specific level that sets a value
wins. The command line's ``--model`` sits above ``defaults`` (it replaces
``defaults.model``) but below stage and task settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Model = Literal["sonnet", "opus"]
Verbosity = Literal["text", "v", "vv"]
OnError = Literal["fail_fast", "continue"]
WorkspaceKind = Literal["shared", "worktree", "snapshot_ro"]
StageMode = Literal["sequential", "parallel"]

_VERBOSITY_ALIASES = {"json": "v", "stream-json": "vv", "stream_json": "vv"}


def _verbosity_alias(value: object) -> object:
    if isinstance(value, str):
        return _VERBOSITY_ALIASES.get(value, value)
    return value


VerbosityIn = Annotated[Verbosity, BeforeValidator(_verbosity_alias)]
Id = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Becomes a directory name: letters, digits, '_', '-', '.', "
        "first character a letter or digit, at most 64 characters.",
    ),
]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Settings(_Closed):
    """Settings that every level of the plan may set; unset means 'inherit'."""

    model: Model | None = Field(default=None, description="Claude model alias.")
    verbosity: VerbosityIn | None = Field(
        default=None,
        description="Agent output forwarded as events: text, v (json), vv (stream-json).",
    )
    on_error: OnError | None = Field(
        default=None, description="fail_fast stops the plan at the first failure; continue runs on."
    )
    workspace: WorkspaceKind | None = Field(
        default=None, description="Where the task runs: shared, worktree (copy) or snapshot_ro."
    )


class Task(Settings):
    """One agent run."""

    id: Id = Field(description="Unique within its stage.")
    prompt: str | None = Field(default=None, description="The prompt text.")
    prompt_file: str | None = Field(
        default=None, description="Path of a UTF-8 prompt file, relative to the workspace."
    )
    read_only: bool = Field(
        default=False,
        description="Declares the task does not write (required guard for parallel + shared).",
    )
    allow_shared_writes: bool = Field(
        default=False, description="Accepts concurrent writes to the shared workspace."
    )


class Stage(Settings):
    """A group of tasks run one by one or in parallel."""

    id: Id = Field(description="Unique within the plan.")
    mode: StageMode = Field(default="sequential", description="sequential or parallel.")
    max_parallel: int | None = Field(
        default=None, ge=1, description="Parallel stages only: at most this many tasks at once."
    )
    tasks: list[Task] = Field(min_length=1, description="The stage's tasks, in order.")


class Plan(_Closed):
    """A v1 pipeline plan."""

    version: Literal["v1"] = Field(description="Plan format version; only v1.")
    defaults: Settings = Field(default_factory=Settings, description="Plan-wide settings.")
    stages: list[Stage] = Field(min_length=1, description="Stages, run in order.")

    @model_validator(mode="after")
    def _unique_ids(self) -> Plan:
        # Cross-field rules live in the loader, which can point at lines; this guard
        # keeps the model safe to use on its own.
        return self


BUILTIN_DEFAULTS = Settings(verbosity="text", on_error="fail_fast", workspace="shared")


@dataclass(frozen=True)
class PromptSource:
    """Where a task's prompt comes from: inline text or a workspace-relative file."""

    text: str | None
    file: str | None


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


@dataclass(frozen=True)
class ResolvedStage:
    id: str
    mode: StageMode
    max_parallel: int | None
    on_error: OnError
    tasks: tuple[ResolvedTask, ...]


@dataclass(frozen=True)
class ResolvedPlan:
    stages: tuple[ResolvedStage, ...]

    @property
    def tasks(self) -> tuple[ResolvedTask, ...]:
        return tuple(t for s in self.stages for t in s.tasks)


def _pick(*levels: Settings, field: str) -> object:
    for level in levels:
        value = getattr(level, field)
        if value is not None:
            return value
    return None


def resolve(plan: Plan, *, cli_model: str | None = None) -> ResolvedPlan:
    """Fill in inherited settings: task > stage > --model > defaults > built-ins."""
    top = plan.defaults
    if cli_model is not None:
        top = top.model_copy(update={"model": cli_model})
    stages = []
    for stage in plan.stages:
        tasks = tuple(
            ResolvedTask(
                stage_id=stage.id,
                id=task.id,
                model=_pick(task, stage, top, field="model"),  # type: ignore[arg-type]
                verbosity=_pick(task, stage, top, BUILTIN_DEFAULTS, field="verbosity"),  # type: ignore[arg-type]
                on_error=_pick(task, stage, top, BUILTIN_DEFAULTS, field="on_error"),  # type: ignore[arg-type]
                workspace=_pick(task, stage, top, BUILTIN_DEFAULTS, field="workspace"),  # type: ignore[arg-type]
                read_only=task.read_only,
                allow_shared_writes=task.allow_shared_writes,
                prompt=PromptSource(task.prompt, task.prompt_file),
            )
            for task in stage.tasks
        )
        stages.append(
            ResolvedStage(
                id=stage.id,
                mode=stage.mode,
                max_parallel=stage.max_parallel,
                on_error=_pick(stage, top, BUILTIN_DEFAULTS, field="on_error"),  # type: ignore[arg-type]
                tasks=tasks,
            )
        )
    return ResolvedPlan(tuple(stages))
