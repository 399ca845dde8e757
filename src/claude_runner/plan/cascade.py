"""Resolve a plan: inherited settings filled in (task > stage > ``--model`` > defaults >
built-ins), the graph compiled, v1 and v2 plans into one ``ResolvedPlan``.

``null`` at any level inherits; ``env`` merges key by key (the task's value wins; a name
given as null inherits that name); every other list or mapping replaces the one above
it. A ``retries`` or ``check`` given in full fills what it leaves out from the built-in
defaults, not from the level above.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from claude_runner.plan import values
from claude_runner.plan.checks import graph_specs
from claude_runner.plan.graph import Graph, compile_graph
from claude_runner.plan.models import Plan, Settings
from claude_runner.plan.models_v2 import (
    CheckSpec,
    PlanV2,
    RehearseSpec,
    RetriesSpec,
    SettingsV2,
    StageV2,
    TaskV2,
)
from claude_runner.plan.models_v2 import RehearseError as RehearseErrorSpec
from claude_runner.plan.resolved import (
    Check,
    ConfigSource,
    Controls,
    PromptSource,
    Rehearse,
    RehearseError,
    ResolvedPlan,
    ResolvedStage,
    ResolvedTask,
    Retries,
)

_BUILTIN = {"verbosity": "text", "on_error": "fail_fast", "workspace": "shared"}


def _pick(field: str, *levels: object) -> Any:
    """The most specific level's value that is not None (levels most specific first)."""
    for level in levels:
        value = getattr(level, field, None)
        if value is not None:
            return value
    return _BUILTIN.get(field)


def _inherited(stage: Settings, top: Settings) -> dict[str, Any]:
    """What a stage's tasks inherit: every setting of the stage, else of the defaults
    (computed once per stage; a task's own value, when not None, wins over it)."""
    return {field: _pick(field, stage, top) for field in type(top).model_fields}


def _own(task: Settings, inherited: dict[str, Any], field: str) -> Any:
    value = task.__dict__.get(field)
    return inherited[field] if value is None else value


def _graph(plan: Plan | PlanV2) -> Graph:
    cached = plan._graph
    if cached is not None:
        return cached
    result = compile_graph(graph_specs(plan.model_dump(include={"stages"}, exclude_none=True)))
    if not isinstance(result, Graph):  # the models check the graph: a valid plan has one
        raise ValueError(f"the plan's graph is invalid: {result[0][1]}")  # noqa: TRY004
    return result


def resolve_plan(plan: Plan | PlanV2, *, cli_model: str | None = None) -> ResolvedPlan:
    """The resolved plan; ``cli_model`` (``--model``) sits between stage and defaults."""
    graph = _graph(plan)
    lines = plan._lines
    top: Settings = plan.defaults
    if cli_model is not None:
        top = top.model_copy(update={"model": cli_model})
    v2 = isinstance(plan, PlanV2)
    stages = []
    for stage in plan.stages:
        tasks = []
        inherited = _inherited(stage, top)
        for task in stage.tasks:
            key = (stage.id, task.id)
            common: dict[str, Any] = {
                "stage_id": stage.id,
                "id": task.id,
                "model": _own(task, inherited, "model"),
                "verbosity": _own(task, inherited, "verbosity"),
                "on_error": _own(task, inherited, "on_error"),
                "workspace": _own(task, inherited, "workspace"),
                "read_only": task.read_only,
                "allow_shared_writes": task.allow_shared_writes,
                "prompt": PromptSource(task.prompt, task.prompt_file),
                "line": lines.get(key),
                "needs": graph.needs[key],
                "layer": graph.layers[key],
            }
            if v2:
                assert isinstance(task, TaskV2)  # noqa: S101 - a v2 plan holds v2 tasks
                assert isinstance(stage, StageV2)  # noqa: S101
                assert isinstance(top, SettingsV2)  # noqa: S101
                common.update(_v2_task(task, stage, top, inherited))
            tasks.append(ResolvedTask(**common))
        stages.append(
            ResolvedStage(
                id=stage.id,
                mode=stage.mode,
                max_parallel=stage.max_parallel,
                on_error=_pick("on_error", stage, top),
                tasks=tuple(tasks),
                needs=graph.stage_needs[stage.id],
            )
        )
    if not isinstance(plan, PlanV2):
        return ResolvedPlan(tuple(stages), version="v1")
    return ResolvedPlan(
        tuple(stages),
        version="v2",
        max_concurrency=plan.max_concurrency,
        timeout_s=_limit(plan.timeout, None),
        budget_usd=plan.budget_usd,
    )


def _limit(seconds: int | None, default: int | None) -> int | None:
    """A duration setting: unset takes the default, 0 means no limit (None)."""
    if seconds is None:
        seconds = default
    return seconds or None


def _v2_task(
    task: TaskV2, stage: StageV2, top: SettingsV2, inherited: dict[str, Any]
) -> dict[str, Any]:
    def pick(field: str) -> Any:
        return _own(task, inherited, field)

    for_each = task.for_each
    return {
        "timeout_s": _limit(pick("timeout"), values.DEFAULT_TIMEOUT_S),
        "idle_timeout_s": _limit(pick("idle_timeout"), values.DEFAULT_IDLE_TIMEOUT_S),
        "retries": _retries(pick("retries")),
        "controls": Controls(
            max_budget_usd=pick("max_budget_usd"),
            max_turns=pick("max_turns"),
            allowed_tools=_tuple(pick("allowed_tools")),
            disallowed_tools=_tuple(pick("disallowed_tools")),
            permission_mode=pick("permission_mode"),
            append_system_prompt=pick("append_system_prompt"),
            mcp_config=_config(pick("mcp_config")),
            add_dirs=_tuple(pick("add_dirs")),
            effort=pick("effort"),
            fallback_model=pick("fallback_model"),
            settings=_config(pick("settings")),
        ),
        "env": _env(top.env, stage.env, task.env),
        "check": _check(pick("check")),
        "when": _when(task.when),
        "for_each": tuple(for_each) if isinstance(for_each, list) else for_each,
        "max_instances": task.max_instances or values.DEFAULT_MAX_INSTANCES,
        "output_schema_json": _json(task.output_schema),
        "rehearse": _rehearse(pick("rehearse")),
    }


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return None if items is None else tuple(items)


def _json(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _config(value: str | Mapping[str, Any] | None) -> ConfigSource | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ConfigSource(file=value, inline_json=None)
    return ConfigSource(file=None, inline_json=_json(value))


def _env(*levels: Mapping[str, str | None] | None) -> tuple[tuple[str, str], ...]:
    merged: dict[str, str] = {}
    for level in levels:  # defaults first: later levels win, name by name
        for name, text in (level or {}).items():
            if text is not None:
                merged[name] = text
    return tuple(sorted(merged.items()))


def _retries(value: int | RetriesSpec | None) -> Retries:
    spec = value if isinstance(value, RetriesSpec) else RetriesSpec(max=value)
    backoff = spec.backoff
    base = backoff.base if backoff is not None and backoff.base is not None else None
    high = backoff.max if backoff is not None and backoff.max is not None else None
    return Retries(
        max=values.DEFAULT_RETRIES if spec.max is None else spec.max,
        on=values.DEFAULT_RETRY_ON if spec.on is None else tuple(dict.fromkeys(spec.on)),
        backoff_base_s=values.DEFAULT_BACKOFF_BASE_S if base is None else base,
        backoff_max_s=values.DEFAULT_BACKOFF_MAX_S if high is None else high,
    )


def _check(value: str | CheckSpec | None) -> Check | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Check(run=value, attempts=values.DEFAULT_CHECK_ATTEMPTS, timeout_s=None)
    return Check(
        run=value.run,
        attempts=values.DEFAULT_CHECK_ATTEMPTS if value.attempts is None else value.attempts,
        timeout_s=_limit(value.timeout, None),
    )


def _when(value: bool | str | None) -> str:
    if value is None:
        return values.DEFAULT_WHEN
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _rehearse(spec: RehearseSpec | None) -> Rehearse | None:
    if spec is None:
        return None
    tools: list[tuple[str, str]] = []
    for tool in spec.tools or ():
        if tool.bash is not None:
            tools.append(("bash", json.dumps({"command": tool.bash})))
        elif tool.write is not None:
            write = {"path": tool.write.path, "content": tool.write.content}
            tools.append(("write", json.dumps(write, ensure_ascii=False)))
    error = spec.error
    if isinstance(error, int):
        error = RehearseErrorSpec(status=error)
    usage = spec.usage
    return Rehearse(
        tools=tuple(tools),
        result=spec.result,
        output_json=_json(spec.output),
        error=None
        if error is None
        else RehearseError(
            status=error.status,
            retry_after_s=error.retry_after,
            message=error.message,
        ),
        errors_before_success=spec.errors_before_success,
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        delay_s=spec.delay,
    )
