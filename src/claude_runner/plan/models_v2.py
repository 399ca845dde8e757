"""Pydantic models of the v2 pipeline plan: every v1 key with the same meaning, plus
guardrails, agent controls, the task graph, verify gates and rehearsal scripts.

Closed like v1: an unknown key is an error. Every cascading setting may be given in
``defaults``, on a stage or on a task; ``null`` at any level means "inherit". Values are
checked here one by one (durations, money, models, names); rules across items (refs,
cycles, templates against the graph) are the loader's, with ``graph`` and ``templates``.
Each field's docstring is its description in the JSON Schema (``schema/plan-v2.schema.json``).
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from claude_runner.plan import rules, values
from claude_runner.plan.checks import check_v2
from claude_runner.plan.graph import Graph
from claude_runner.plan.messages import describe
from claude_runner.plan.models import (
    SKIP_RULES,
    Settings,
    StageFields,
    TaskFields,
    _Closed,
    bounded_list,
)

# --- value types --------------------------------------------------------------------------


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "#bool"),
    (int, "#int"),
    (float, "#float"),
    (str, "#str"),
    (list, "#list"),
    (dict, "#dict"),
)


def _json_kind(value: Any) -> str | None:
    """The JSON type of a value (bool before int), as the tag of the union branch."""
    return next((tag for kind, tag in _KINDS if isinstance(value, kind)), None)


def by_type(expected: str) -> Discriminator:
    """Choose a union's branch by the value's JSON type, so that errors come from that
    branch alone (the loader drops the ``#type`` tags from locations)."""
    return Discriminator(
        _json_kind, custom_error_type="wrong_type", custom_error_message=f"expected {expected}"
    )


def _duration(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "bad_duration",
            "expected a duration (seconds, or 90s, 30m, 2h, 1h30m), got {what}",
            {"what": describe(value)},
        )
    try:
        return values.duration_seconds(value)
    except ValueError as err:
        raise PydanticCustomError("bad_duration", str(err)) from None


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": values.MAX_DURATION_S},
        {"type": "string", "pattern": values.DURATION_PATTERN},
    ]
}
# Seconds once validated.
Duration = Annotated[StrictInt, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]


def _money(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError(
            "bad_money",
            "expected an amount of US dollars (a number), got {what}",
            {"what": describe(value)},
        )
    try:
        return values.money(value)
    except ValueError as err:
        raise PydanticCustomError("bad_money", str(err)) from None


Money = Annotated[
    StrictFloat,
    BeforeValidator(_money),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0}),
]


def _model(value: str) -> str:
    problem = values.model_problem(value)
    if problem is not None:
        raise PydanticCustomError("bad_model", problem)
    return value


ModelName = Annotated[
    StrictStr,
    AfterValidator(_model),
    WithJsonSchema({"type": "string", "pattern": values.MODEL_PATTERN, "maxLength": 100}),
]


def _text(value: str) -> str:
    if rules.is_blank(value):
        raise PydanticCustomError("blank", "is empty; write something or remove the key")
    problem = values.arg_problem(value, "the text")
    if problem is not None:
        raise PydanticCustomError("too_big", problem)
    return value


_TEXT_SCHEMA = {"type": "string", "pattern": rules.TEXT_PATTERN}
Text = Annotated[StrictStr, AfterValidator(_text), WithJsonSchema(_TEXT_SCHEMA)]


def _path(value: str) -> str:
    problem = rules.prompt_path_problem(value)
    if problem is not None:
        raise PydanticCustomError("bad_path", problem.replace("prompt_file", "the path", 1))
    return value


WorkspacePath = Annotated[
    StrictStr,
    AfterValidator(_path),
    WithJsonSchema({"type": "string", "pattern": rules.PROMPT_PATH_PATTERN}),
]


def _dir(value: str) -> str:
    if rules.is_blank(value):
        raise PydanticCustomError("blank", "is empty; give a directory")
    if any(ord(c) < 0x20 for c in value) or len(value.encode()) > rules.PATH_MAX:
        raise PydanticCustomError(
            "bad_dir",
            f"{rules.echo(value)} cannot be a directory path (control characters "
            f"or longer than {rules.PATH_MAX} bytes)",
        )
    return value


DirPath = Annotated[
    StrictStr,
    AfterValidator(_dir),
    WithJsonSchema({"type": "string", "pattern": rules.DIR_PATTERN}),
]


def _bounded(limit: int) -> BeforeValidator:
    """Refuse a list or mapping with more than ``limit`` items before checking any."""

    def check(value: Any) -> Any:
        if isinstance(value, list | dict) and len(value) > limit:
            raise PydanticCustomError(
                "too_long", "more than {limit} items, the limit", {"limit": limit}
            )
        return value

    return BeforeValidator(check)


def _items(limit: int) -> Any:
    return Field(max_length=limit)


def _fits_argv(value: Any) -> Any:
    """A list or mapping that becomes program arguments (or environment strings) must fit
    in them all together, not only item by item."""
    parts = value.items() if isinstance(value, dict) else ((v, "") for v in value)
    size = sum(len(f"{k}{v or ''}".encode()) for k, v in parts)
    if size > values.MAX_ARG_BYTES:
        raise PydanticCustomError(
            "too_big",
            "the items make {size} bytes together; a program's arguments and environment "
            "hold at most {limit} of them here (Linux refuses more): shorten them",
            {"size": size, "limit": values.MAX_ARG_BYTES},
        )
    return value


_ARGV = AfterValidator(_fits_argv)
TextList = Annotated[
    list[Text], _bounded(values.MAX_LIST_ITEMS), _items(values.MAX_LIST_ITEMS), _ARGV
]
DirList = Annotated[
    list[DirPath], _bounded(values.MAX_LIST_ITEMS), _items(values.MAX_LIST_ITEMS), _ARGV
]


def _json_value(value: Any) -> Any:
    """Free-form values go to the CLI or into prompts as JSON: finite numbers only."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise PydanticCustomError(
            "not_json", "holds .inf or .nan, which JSON (and so the CLI) cannot take"
        ) from None
    return value


def _json_fits(value: dict[str, Any]) -> dict[str, Any]:
    _json_value(value)
    problem = values.arg_problem(json.dumps(value, separators=(",", ":")), "as JSON, the mapping")
    if problem is not None:
        raise PydanticCustomError("too_big", problem)
    return value


JsonMapping = Annotated[dict[str, Any], AfterValidator(_json_fits)]
PathOrMapping = Annotated[
    Annotated[WorkspacePath, Tag("#str")] | Annotated[JsonMapping, Tag("#dict")],
    by_type("a workspace-relative path, or the configuration as a mapping"),
]


def _schema_mapping(value: dict[str, Any]) -> dict[str, Any]:
    _json_value(value)
    text = values.schema_text(value)
    size = len(text.encode())
    if size > values.MAX_OUTPUT_SCHEMA_BYTES:
        raise PydanticCustomError(
            "too_big",
            "output_schema is {size} bytes as JSON, more than {limit}; a structured answer "
            "needs a smaller schema",
            {"size": size, "limit": values.MAX_OUTPUT_SCHEMA_BYTES},
        )
    problem = _schema_problem(text)
    if problem is not None:
        raise PydanticCustomError(
            "bad_json_schema", "is not a valid JSON Schema ({problem})", {"problem": problem}
        )
    return value


@functools.lru_cache(maxsize=256)
def _schema_problem(text: str) -> str | None:
    """Why the schema (as canonical JSON) is not a JSON Schema, or None; once per schema."""
    import jsonschema  # noqa: PLC0415 - costs ~0.1 s to import; only plans with output_schema

    schema = json.loads(text)
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "the top"
        return f"at {where}: {err.message[:200]}"
    return None


_METASCHEMA = "https://json-schema.org/draft/2020-12/schema"
OutputSchema = Annotated[
    dict[str, Any],
    AfterValidator(_schema_mapping),
    WithJsonSchema({"type": "object", "$ref": _METASCHEMA}),
]


def _env_name(value: str) -> str:
    problem = values.env_name_problem(value)
    if problem is not None:
        raise PydanticCustomError("bad_env_name", problem)
    return value


EnvName = Annotated[
    StrictStr,
    AfterValidator(_env_name),
    WithJsonSchema({"type": "string", "pattern": values.ENV_NAME_PATTERN}),
]


def _env_value(value: str) -> str:
    problem = values.arg_problem(value, "the value")
    if problem is not None:
        raise PydanticCustomError("too_big", problem)
    return value


EnvValue = Annotated[
    StrictStr,
    AfterValidator(_env_value),
    WithJsonSchema({"type": "string", "pattern": rules.CLEAN_TEXT_PATTERN}),
]


EnvMap = Annotated[
    dict[EnvName, EnvValue | None],
    _bounded(values.MAX_ENV),
    _ARGV,
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": values.MAX_ENV,
            "propertyNames": {"pattern": values.ENV_NAME_PATTERN, "maxLength": values.ENV_NAME_MAX},
            "additionalProperties": {
                "anyOf": [{"type": "string", "pattern": rules.CLEAN_TEXT_PATTERN}, {"type": "null"}]
            },
        }
    ),
]


def _ref(value: str) -> str:
    if not values.REF_RE.fullmatch(value):
        raise PydanticCustomError(
            "bad_ref",
            "{ref} is not a ref; write stage/task, stage/*, or a task or stage id",
            {"ref": rules.echo(value)},
        )
    return value


Ref = Annotated[
    StrictStr,
    AfterValidator(_ref),
    WithJsonSchema({"type": "string", "pattern": values.REF_PATTERN}),
]
Needs = Annotated[list[Ref], _bounded(rules.MAX_TASKS), _items(rules.MAX_TASKS)]
Kind = Literal[
    "timeout",
    "idle_timeout",
    "rate_limited",
    "api_error",
    "auth",
    "max_turns",
    "crash",
    "agent_error",
    "output_invalid",
    "check_failed",
]
PermissionMode = Literal["acceptEdits", "auto", "bypassPermissions", "manual", "dontAsk", "plan"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]

# --- nested settings ----------------------------------------------------------------------


class Backoff(_Closed):
    """Waits between attempts: exponential from base, at most max, with full jitter."""

    base: Duration | None = Field(default=None, description="First wait (default 5s).")
    max: Duration | None = Field(default=None, description="Longest wait (default 2m).")


class RetriesSpec(_Closed):
    """Retries in full: how many, for which failure kinds, how long to wait."""

    max: Annotated[StrictInt, Field(ge=0, le=values.MAX_RETRIES)] | None = Field(
        default=None, description="Attempts after the first (default 2)."
    )
    on: Annotated[list[Kind], _bounded(20), Field(max_length=20)] | None = Field(
        default=None,
        description="Failure kinds that are retried (default: rate_limited, api_error, "
        "crash, idle_timeout).",
    )
    backoff: Backoff | None = Field(default=None, description="Waits between attempts.")


class CheckSpec(_Closed):
    """A verify gate in full."""

    run: Text = Field(description="Shell command (bash -c) run in the task's directory.")
    attempts: Annotated[StrictInt, Field(ge=1, le=values.MAX_CHECK_ATTEMPTS)] | None = Field(
        default=None, description="The most times the check runs (default 3)."
    )
    timeout: Duration | None = Field(
        default=None, description="Limit for one run of the check (unset: the task's limits)."
    )


class WriteTool(_Closed):
    """A Write tool call: a file and its content."""

    path: Text = Field(description="File to write, relative to the task's directory.")
    content: StrictStr = Field(description="The file's content.")


class RehearseTool(_Closed):
    """One tool call of the stand-in model: exactly one of bash or write."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    bash: Text | None = Field(default=None, description="A Bash tool call: the command.")
    write: WriteTool | None = Field(default=None, description="A Write tool call.")

    @model_validator(mode="after")
    def _one_tool(self) -> RehearseTool:
        if (self.bash is None) == (self.write is None):
            raise PydanticCustomError("one_tool", "give exactly one tool: bash or write")
        return self


class RehearseError(_Closed):
    """An HTTP error the stand-in answers instead of a reply."""

    status: Annotated[StrictInt, Field(ge=400, le=599)] = Field(description="HTTP status.")
    retry_after: Duration | None = Field(default=None, description="Retry-After it sends.")
    message: Text | None = Field(default=None, description="The error's message.")


class Usage(_Closed):
    """Token usage reported on each reply."""

    input_tokens: Annotated[StrictInt, Field(ge=0)] | None = Field(
        default=None, description="Input tokens."
    )
    output_tokens: Annotated[StrictInt, Field(ge=0)] | None = Field(
        default=None, description="Output tokens."
    )


class RehearseSpec(_Closed):
    """Scripted answers of the built-in stand-in model; ignored outside rehearsals."""

    tools: Annotated[list[RehearseTool], _bounded(1000), Field(max_length=1000)] | None = Field(
        default=None, description="Tool calls, one per turn, in order."
    )
    result: StrictStr | None = Field(
        default=None, description="Final text (default: the task's prompt)."
    )
    output: Any = Field(
        default=None, description="Structured output (default: a value the schema accepts)."
    )
    error: (
        Annotated[
            Annotated[StrictInt, Field(ge=400, le=599), Tag("#int")]
            | Annotated[RehearseError, Tag("#dict")],
            by_type("an HTTP status, or a mapping with status, retry_after and message"),
        ]
        | None
    ) = Field(default=None, description="HTTP status answered instead, or the error in full.")
    errors_before_success: Annotated[StrictInt, Field(ge=1, le=1000)] | None = Field(
        default=None, description="With error: the first N attempts get it, later ones succeed."
    )
    usage: Usage | None = Field(default=None, description="Usage reported on each reply.")
    delay: Duration | None = Field(default=None, description="Wait before each reply.")

    @model_validator(mode="after")
    def _error_first(self) -> RehearseSpec:
        if self.errors_before_success is not None and self.error is None:
            raise PydanticCustomError(
                "needs_error", "errors_before_success needs error: set the error to answer"
            )
        _json_value(self.output)
        return self


def _rehearse_schema(schema: dict[str, Any]) -> None:
    schema["dependentRequired"] = {"errors_before_success": ["error"]}


RehearseSpec.model_config["json_schema_extra"] = _rehearse_schema

# --- levels -------------------------------------------------------------------------------


class SettingsV2(Settings):
    """Settings every level may set (defaults, stage, task); null inherits."""

    model: ModelName | None = Field(  # type: ignore[assignment]
        default=None, description="sonnet, opus, haiku, or a full model id (claude-...)."
    )
    timeout: Duration | None = Field(
        default=None, description="Per attempt, wall clock; 0: no limit (default 2h)."
    )
    idle_timeout: Duration | None = Field(
        default=None,
        description="Longest silence from the CLI; 0: no limit (default 20m).",
    )
    retries: (
        Annotated[
            Annotated[StrictInt, Field(ge=0, le=values.MAX_RETRIES), Tag("#int")]
            | Annotated[RetriesSpec, Tag("#dict")],
            by_type("a number of retries, or a mapping with max, on and backoff"),
        ]
        | None
    ) = Field(default=None, description="Attempts after the first, or retries in full (default 2).")
    max_budget_usd: Money | None = Field(default=None, description="--max-budget-usd.")
    max_turns: Annotated[StrictInt, Field(ge=1, le=values.MAX_TURNS)] | None = Field(
        default=None, description="--max-turns."
    )
    allowed_tools: TextList | None = Field(default=None, description="--allowed-tools.")
    disallowed_tools: TextList | None = Field(default=None, description="--disallowed-tools.")
    permission_mode: PermissionMode | None = Field(
        default=None,
        description="--permission-mode (unset: --dangerously-skip-permissions).",
    )
    append_system_prompt: Text | None = Field(default=None, description="--append-system-prompt.")
    mcp_config: PathOrMapping | None = Field(
        default=None, description="--mcp-config: a workspace file, or the config inline."
    )
    add_dirs: DirList | None = Field(default=None, description="--add-dir, one per directory.")
    effort: Effort | None = Field(default=None, description="--effort.")
    fallback_model: ModelName | None = Field(default=None, description="--fallback-model.")
    settings: PathOrMapping | None = Field(
        default=None, description="--settings: a workspace file, or the settings inline."
    )
    env: EnvMap | None = Field(
        default=None,
        description="Extra environment variables (templates; ${{ env.NAME }} reads the "
        "runner's); merged key by key across levels.",
    )
    check: (
        Annotated[
            Annotated[Text, Tag("#str")] | Annotated[CheckSpec, Tag("#dict")],
            by_type("a shell command, or a mapping with run, attempts and timeout"),
        ]
        | None
    ) = Field(default=None, description="A verify gate: a shell command, or the gate in full.")
    rehearse: RehearseSpec | None = Field(
        default=None, description="Scripted answers for rehearsals."
    )


_FOR_EACH_SCHEMA = {
    "anyOf": [
        {"type": "array", "maxItems": values.MAX_INSTANCES},
        {"type": "string", "pattern": r"^\$\{\{[\s\S]*\}\}(?![\s\S])"},
        {"type": "null"},
    ]
}
ForEach = Annotated[
    Annotated[
        Annotated[list[Any], AfterValidator(_json_value), Tag("#list")]
        | Annotated[StrictStr, Tag("#str")],
        by_type("a list, or one ${{ expression }} that gives a list"),
    ]
    | None,
    WithJsonSchema(_FOR_EACH_SCHEMA),
]


class TaskV2(TaskFields, SettingsV2):
    """One agent run: exactly one of prompt or prompt_file."""

    needs: Needs | None = Field(default=None, description="Tasks this one waits for (refs).")
    when: (
        Annotated[
            Annotated[StrictBool, Tag("#bool")] | Annotated[Text, Tag("#str")],
            by_type("an expression, or true or false"),
        ]
        | None
    ) = Field(default=None, description="Run only when true: an expression (default success()).")
    for_each: ForEach = Field(
        default=None,
        description="Fan out: a list, or one ${{ expression }} giving a list at run time.",
    )
    max_instances: Annotated[StrictInt, Field(ge=1, le=values.MAX_INSTANCES)] | None = Field(
        default=None, description="The most instances for_each may make (default 64)."
    )
    output_schema: OutputSchema | None = Field(
        default=None, description="JSON Schema of the structured output (--json-schema)."
    )


class StageV2(StageFields, SettingsV2):
    """A group of tasks run one by one or in parallel."""

    needs: Needs | None = Field(
        default=None, description="What every task waits for (default: the previous stage)."
    )
    tasks: Annotated[list[TaskV2], *bounded_list(TaskV2)] = Field(
        description="The stage's tasks, in order."
    )


class PlanV2(_Closed):
    """A v2 pipeline plan."""

    model_config = ConfigDict(title="claude-runner pipeline plan v2")

    version: Literal["v2"] = Field(description="Plan format version.")
    defaults: SettingsV2 = Field(default_factory=SettingsV2, description="Plan-wide settings.")
    max_concurrency: Annotated[StrictInt, Field(ge=1)] | None = Field(
        default=None, description="CLIs of the run running at once, across stages."
    )
    timeout: Duration | None = Field(default=None, description="The whole run; 0: no limit.")
    budget_usd: Money | None = Field(default=None, description="Total spend cap; fails closed.")
    stages: Annotated[list[StageV2], *bounded_list(StageV2)] = Field(
        description="Stages; with needs, a graph."
    )
    _lines: dict[tuple[str, str], int] = PrivateAttr(default_factory=dict)  # set by the loader
    _graph: Graph | None = PrivateAttr(default=None)  # set by the loader

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> PlanV2:
        # The loader checks these itself (with lines); this keeps the model safe alone.
        if isinstance(info.context, dict) and info.context.get(SKIP_RULES):
            return self
        found = check_v2(self.model_dump(exclude_none=True))
        if found:
            raise ValueError("; ".join(f"{rules.dotted(loc)}: {msg}" for loc, msg in found))
        return self
