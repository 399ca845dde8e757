"""v2 plans for the benches, written as the plain data of a v2 YAML plan.

The v2 loader is not there yet, so ``resolved`` turns that data into the resolved plan
itself, for the subset of keys the benches use; when the loader lands, this module
becomes ``resolve(load(data))`` and the benches keep their plans as they are.

Subset: top level ``max_concurrency``, ``timeout``, ``budget_usd``, ``defaults``;
stages with ``id``, ``mode``, ``max_parallel``, ``needs``, ``tasks``; tasks with ``id``,
``prompt``, ``needs``. Cascading (task > stage > defaults): ``on_error``, ``workspace``,
``read_only``, ``timeout``, ``idle_timeout``, ``retries``, ``max_budget_usd``, with the
v2 defaults of the spec (``timeout`` 2h, ``idle_timeout`` 20m, ``retries`` max 2 on the
transient kinds, backoff 5 s to 2 min). Durations are seconds (``0``: no limit); refs
are ``stage/task``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from claude_runner.plan.resolved import (
    DEFAULT_RETRY_ON,
    AgentControls,
    PromptSource,
    ResolvedPlan,
    ResolvedStage,
    ResolvedTask,
    Retries,
)

V2_DEFAULTS: Mapping[str, Any] = {
    "on_error": "fail_fast",
    "workspace": "shared",
    "read_only": False,
    "timeout": 2 * 3600,
    "idle_timeout": 20 * 60,
    "retries": {"max": 2},
    "max_budget_usd": None,
}


def _retries(value: int | Mapping[str, Any]) -> Retries:
    if isinstance(value, int):
        return Retries(max=value)
    backoff = value.get("backoff", {})
    return Retries(
        max=value.get("max", 2),
        on=frozenset(value.get("on", DEFAULT_RETRY_ON)),
        backoff_base=float(backoff.get("base", 5)),
        backoff_max=float(backoff.get("max", 120)),
    )


def _seconds(value: float | None) -> float | None:
    return None if not value else float(value)


def _refs(refs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for ref in refs:
        stage, _, task = ref.partition("/")
        out.append((stage, task))
    return tuple(out)


def _pick(key: str, *levels: Mapping[str, Any]) -> Any:
    """The first level's value for ``key`` (task > stage > defaults)."""
    for level in levels:
        if key in level:
            return level[key]
    return None


def resolved(data: Mapping[str, Any]) -> ResolvedPlan:
    """The resolved plan of a v2 plan given as plain data (see the module docstring)."""
    defaults = {**V2_DEFAULTS, **data.get("defaults", {})}
    stages = []
    for stage in data["stages"]:
        tasks = []
        for task in stage["tasks"]:
            levels = (task, stage, defaults)
            tasks.append(
                ResolvedTask(
                    stage_id=stage["id"],
                    id=task["id"],
                    model=None,
                    verbosity="text",
                    on_error=_pick("on_error", *levels),
                    workspace=_pick("workspace", *levels),
                    read_only=_pick("read_only", *levels),
                    allow_shared_writes=False,
                    prompt=PromptSource(task["prompt"], None),
                    timeout=_seconds(_pick("timeout", *levels)),
                    idle_timeout=_seconds(_pick("idle_timeout", *levels)),
                    retries=_retries(_pick("retries", *levels)),
                    controls=AgentControls(max_budget_usd=_pick("max_budget_usd", *levels)),
                    needs=_refs(task.get("needs", ())),
                )
            )
        stages.append(
            ResolvedStage(
                id=stage["id"],
                mode=stage.get("mode", "sequential"),
                max_parallel=stage.get("max_parallel"),
                on_error=stage.get("on_error", defaults["on_error"]),
                tasks=tuple(tasks),
                needs=None if "needs" not in stage else _refs(stage["needs"]),
            )
        )
    return ResolvedPlan(
        tuple(stages),
        version="v2",
        max_concurrency=data.get("max_concurrency"),
        timeout=_seconds(data.get("timeout")),
        budget_usd=data.get("budget_usd"),
    )
