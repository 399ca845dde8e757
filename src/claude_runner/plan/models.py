"""Pydantic models of the v1 pipeline plan, the parts v2 shares, and ``resolve``.

Settings cascade defaults -> stage -> task; the most specific level that sets a value
wins. ``model``, ``verbosity``, ``on_error`` and ``workspace`` may be set at every level;
``read_only`` and ``allow_shared_writes`` only on a task (they describe what one agent
does). The command line's ``--model`` sits above ``defaults`` (it replaces
``defaults.model``) but below stage and task settings.

Types are strict where YAML and pydantic would otherwise guess: booleans must be YAML
booleans (``"yes"`` in quotes is a string, not true), counts must be integers.
Cross-field rules (unique ids, one prompt source, the parallel + shared guard) live in
``rules`` so the loader can report each with its line; ``Plan`` re-checks them when it is
built directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from claude_runner.plan import rules
from claude_runner.plan.bounded import each_item, few_unknown_keys
from claude_runner.plan.checks import check_v1
from claude_runner.plan.graph import Graph
from claude_runner.plan.resolved import (
    OnError,
    PromptSource,
    ResolvedPlan,
    ResolvedStage,
    ResolvedTask,
    StageMode,
    Verbosity,
    WorkspaceKind,
)

if TYPE_CHECKING:
    from claude_runner.plan.models_v2 import PlanV2

__all__ = [
    "Plan",
    "PromptSource",
    "ResolvedPlan",
    "ResolvedStage",
    "ResolvedTask",
    "Settings",
    "Stage",
    "Task",
    "resolve",
]

Model = Literal["sonnet", "opus"]

VERBOSITY_ALIASES = {"json": "v", "stream-json": "vv", "stream_json": "vv"}
# Loader context key: the loader runs ``rules`` itself to locate each problem.
SKIP_RULES = "skip_plan_rules"


def _verbosity_alias(value: object) -> object:
    if isinstance(value, str):
        return VERBOSITY_ALIASES.get(value, value)
    return value


def _check_id(value: str) -> str:
    if not rules.ID_RE.fullmatch(value):
        raise PydanticCustomError("unsafe_id", rules.id_message(value))
    return value


def _check_prompt(value: str) -> str:
    if rules.is_blank(value):
        raise PydanticCustomError(
            "empty_prompt",
            "the prompt is empty (only spaces, invisible or control characters): "
            "write the task for the agent",
        )
    return value


def _check_prompt_file(value: str) -> str:
    problem = rules.prompt_path_problem(value)
    if problem is not None:
        raise PydanticCustomError("bad_prompt_file", problem)
    return value


VerbosityIn = Annotated[
    Verbosity,
    BeforeValidator(_verbosity_alias),
    WithJsonSchema({"enum": ["text", "v", "vv", *VERBOSITY_ALIASES]}),
]
Id = Annotated[
    StrictStr,
    AfterValidator(_check_id),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": rules.ID_SCHEMA_PATTERN,
            "minLength": 1,
            "maxLength": rules.ID_MAX,
        }
    ),
]
_PROMPT_SCHEMA = {"type": "string", "pattern": rules.TEXT_PATTERN}
_PROMPT_PATH_SCHEMA = {"type": "string", "pattern": rules.PROMPT_PATH_PATTERN}
PromptText = Annotated[StrictStr, AfterValidator(_check_prompt), WithJsonSchema(_PROMPT_SCHEMA)]
PromptPath = Annotated[
    StrictStr, AfterValidator(_check_prompt_file), WithJsonSchema(_PROMPT_PATH_SCHEMA)
]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_keys(cls, data: Any) -> Any:
        return few_unknown_keys(cls, data)


class Settings(_Closed):
    """Settings that every level of the plan may set; unset means 'inherit'."""

    model: Model | None = Field(default=None, description="Claude model alias.")
    verbosity: VerbosityIn | None = Field(
        default=None,
        description="Agent output forwarded as events: text, v (alias json), "
        "vv (aliases stream-json, stream_json).",
    )
    on_error: OnError | None = Field(
        default=None, description="fail_fast stops the plan at the first failure; continue runs on."
    )
    workspace: WorkspaceKind | None = Field(
        default=None, description="Where the task runs: shared, worktree (copy) or snapshot_ro."
    )


def _task_schema(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [{"required": ["prompt"]}, {"required": ["prompt_file"]}]


class TaskFields(_Closed):
    """A task's own keys, in every version (mixed in before the settings)."""

    model_config = ConfigDict(json_schema_extra=_task_schema)

    id: Id = Field(description="Unique within its stage; becomes a directory name.")
    # Not nullable in the schema: a key given as null is an error ("has no value").
    prompt: Annotated[PromptText | None, WithJsonSchema(_PROMPT_SCHEMA)] = Field(
        default=None, description="The prompt text (not empty)."
    )
    prompt_file: Annotated[PromptPath | None, WithJsonSchema(_PROMPT_PATH_SCHEMA)] = Field(
        default=None,
        description="Path of a UTF-8 prompt file, relative to the workspace, without '..'; "
        "read when the task starts.",
    )
    read_only: StrictBool = Field(
        default=False,
        description="Declares the task does not write (required guard for parallel + shared).",
    )
    allow_shared_writes: StrictBool = Field(
        default=False, description="Accepts concurrent writes to the shared workspace."
    )


class Task(TaskFields, Settings):
    """One agent run: exactly one of prompt or prompt_file."""


def _stage_schema(schema: dict[str, Any]) -> None:
    # max_parallel only where it applies: a parallel stage (null, "unset", anywhere).
    schema["if"] = {"not": {"properties": {"mode": {"const": "parallel"}}, "required": ["mode"]}}
    schema["then"] = {"properties": {"max_parallel": {"type": "null"}}}


class StageFields(_Closed):
    """A stage's own keys, in every version (its tasks are typed per version)."""

    model_config = ConfigDict(json_schema_extra=_stage_schema)

    id: Id = Field(description="Unique within the plan; becomes a directory name.")
    mode: StageMode = Field(default="sequential", description="sequential or parallel.")
    max_parallel: Annotated[StrictInt, Field(ge=1)] | None = Field(
        default=None, description="Parallel stages only: at most this many tasks at once."
    )


def bounded_list(item: type[BaseModel]) -> tuple[Any, ...]:
    """Metadata for ``Annotated[list[item], ...]``: at least one item, at most
    ``rules.MAX_TASKS``, validated one by one (``bounded``)."""
    return (
        Field(min_length=1, max_length=rules.MAX_TASKS),
        WrapValidator(each_item(item, max_items=rules.MAX_TASKS)),
    )


class Stage(StageFields, Settings):
    """A group of tasks run one by one or in parallel."""

    tasks: Annotated[list[Task], *bounded_list(Task)] = Field(
        description="The stage's tasks, in order."
    )


class Plan(_Closed):
    """A v1 pipeline plan."""

    model_config = ConfigDict(title="claude-runner pipeline plan v1")

    version: Literal["v1"] = Field(description="Plan format version.")
    defaults: Settings = Field(default_factory=Settings, description="Plan-wide settings.")
    stages: Annotated[list[Stage], *bounded_list(Stage)] = Field(
        description="Stages, run in order."
    )
    _lines: dict[tuple[str, str], int] = PrivateAttr(default_factory=dict)  # set by the loader
    _graph: Graph | None = PrivateAttr(default=None)  # set by the loader

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> Plan:
        # The loader checks these itself (with lines); this keeps the model safe alone.
        if isinstance(info.context, dict) and info.context.get(SKIP_RULES):
            return self
        found = check_v1(self.model_dump(exclude_none=True))
        if found:
            raise ValueError("; ".join(f"{rules.dotted(loc)}: {msg}" for loc, msg in found))
        return self


def resolve(plan: Plan | PlanV2, *, cli_model: str | None = None) -> ResolvedPlan:
    """Fill in inherited settings (task > stage > --model > defaults > built-ins), resolve
    the graph; one shape for v1 and v2 plans (see ``resolved``)."""
    from claude_runner.plan.cascade import resolve_plan  # noqa: PLC0415 - cascade imports us

    return resolve_plan(plan, cli_model=cli_model)
