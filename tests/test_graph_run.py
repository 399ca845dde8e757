"""The v2 task graph at run time, with the fault agent: needs that propagate failures,
conditions, fan-out from a literal list or an upstream output, templates, always() after
fail_fast. (The same with the real CLI: tests/test_graph_cli.py.)"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from claude_runner.plan.resolved import ResolvedPlan, ResolvedStage, ResolvedTask
from tests.runs import Runner, of_type, plan_of, result_of, task, tuned


def _task(tid: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "prompt": prompt, **extra}


def _set(plan: ResolvedPlan, key: tuple[str, str], **fields: Any) -> ResolvedPlan:
    """The plan with one task's fields replaced."""

    def task_of(t: ResolvedTask) -> ResolvedTask:
        return dataclasses.replace(t, **fields) if t.key == key else t

    stages = tuple(
        dataclasses.replace(s, tasks=tuple(task_of(t) for t in s.tasks)) for s in plan.stages
    )
    return dataclasses.replace(plan, stages=stages)


def _stage_needs(
    plan: ResolvedPlan, stage_id: str, needs: tuple[tuple[str, str], ...]
) -> ResolvedPlan:
    def stage_of(s: ResolvedStage) -> ResolvedStage:
        return dataclasses.replace(s, needs=needs) if s.id == stage_id else s

    return dataclasses.replace(plan, stages=tuple(stage_of(s) for s in plan.stages))


def test_failures_propagate_to_dependents_only(runner: Runner) -> None:
    plan = tuned(
        plan_of(
            {
                "id": "a",
                "tasks": [_task("bad", "error"), _task("good", "ok")],
                "mode": "parallel",
                "workspace": "snapshot_ro",
            },
            {
                "id": "b",
                "tasks": [
                    _task("after-bad", "ok"),
                    _task("after-good", "ok"),
                    _task("fixer", "ok"),
                    _task("notify", "ok"),
                ],
                "mode": "parallel",
                "workspace": "snapshot_ro",
            },
            on_error="continue",
        )
    )
    plan = _stage_needs(plan, "b", ())
    plan = _set(plan, ("b", "after-bad"), needs=(("a", "bad"),))
    plan = _set(plan, ("b", "after-good"), needs=(("a", "good"),))
    plan = _set(plan, ("b", "fixer"), needs=(("b", "after-bad"),), when="failure()")
    plan = _set(plan, ("b", "notify"), needs=(("a", "bad"),), when="${{ always() }}")
    code, events = runner.run(plan)
    status = {t["task_id"]: (t["status"], t["failure_kind"]) for t in result_of(events)["tasks"]}
    assert code == 1
    assert status == {
        "bad": ("failed", "agent_error"),
        "good": ("succeeded", None),
        "after-bad": ("skipped", "upstream_failed"),
        "after-good": ("succeeded", None),
        "fixer": ("succeeded", None),  # failure(): something upstream failed
        "notify": ("succeeded", None),
    }
    assert task(events, "b", "after-bad")["reason"] == "needs a/bad, which did not succeed"


def test_a_false_condition_skips_without_failing_the_run(runner: Runner) -> None:
    plan = tuned(
        plan_of({"id": "s", "tasks": [_task("a", "ok"), _task("b", "ok"), _task("c", "ok")]})
    )
    plan = _set(plan, ("s", "b"), when="tasks.a.status == 'failed'")
    code, events = runner.run(plan)
    assert code == 0
    b, c = task(events, "s", "b"), task(events, "s", "c")
    assert (b["status"], b["failure_kind"], b["reason"]) == ("skipped", None, "condition false")
    # b's dependent (the next task of a sequential stage) follows the same rule.
    assert (c["status"], c["failure_kind"]) == ("skipped", None)
    assert result_of(events)["status"] == "succeeded"


def test_fan_out_from_an_upstream_output_and_results_downstream(runner: Runner) -> None:
    modules = ["alpha", "beta", "gamma"]
    plan = tuned(
        plan_of(
            {
                "id": "plan",
                "tasks": [_task("planner", "output " + json.dumps({"modules": modules}))],
            },
            {
                "id": "port",
                "tasks": [_task("port", "ok ${{ item }} ${{ index }}")],
                "mode": "parallel",
                "workspace": "snapshot_ro",
            },
            {"id": "review", "tasks": [_task("reviewer", "ok ${{ toJSON(tasks.port.results) }}")]},
        )
    )
    plan = _set(plan, ("plan", "planner"), output_schema={"type": "object"})
    plan = _set(plan, ("port", "port"), for_each="${{ tasks.planner.output.modules }}")
    code, events = runner.run(plan)
    assert code == 0, result_of(events)
    tasks = result_of(events)["tasks"]
    assert [t["task_id"] for t in tasks] == ["planner", "port[0]", "port[1]", "port[2]", "reviewer"]
    ports = [t for t in tasks if t["instance_of"] == "port"]
    assert [t["item"] for t in ports] == modules
    # The prompt was rendered per instance: the fake agent reports its prompt's length.
    assert [t["result"] for t in ports] == [
        f"done: prompt of {len(f'ok {m} {i}')} characters" for i, m in enumerate(modules)
    ]
    starts = [e for e in of_type(events, "task_start") if e["stage_id"] == "port"]
    assert [e["instance_of"] for e in starts] == ["port"] * 3
    # The reviewer saw the three results as one JSON list.
    expected = "ok " + json.dumps([t["result"] for t in ports], separators=(",", ":"))
    assert (
        task(events, "review", "reviewer")["result"]
        == f"done: prompt of {len(expected)} characters"
    )
    assert task(events, "port", "port[1]")["workspace"].endswith("/tasks/port/port[1]/workspace")


def test_an_empty_fan_out_lets_dependents_run(runner: Runner) -> None:
    plan = tuned(plan_of({"id": "s", "tasks": [_task("each", "ok"), _task("after", "ok")]}))
    plan = _set(plan, ("s", "each"), for_each=())
    code, events = runner.run(plan)
    assert code == 0
    each = task(events, "s", "each")
    assert (each["status"], each["failure_kind"], each["reason"]) == (
        "skipped",
        None,
        "for_each gave no items",
    )
    assert task(events, "s", "after")["status"] == "succeeded"


def test_always_runs_after_fail_fast_and_the_rest_is_skipped(runner: Runner) -> None:
    plan = tuned(
        plan_of(
            {"id": "a", "tasks": [_task("bad", "error")]},
            {"id": "b", "tasks": [_task("next", "ok")]},
            {"id": "c", "tasks": [_task("summary", "ok")]},
        )
    )
    plan = _stage_needs(plan, "c", (("a", "bad"),))
    plan = _set(plan, ("c", "summary"), when="always()")
    code, events = runner.run(plan)
    assert code == 1
    assert task(events, "b", "next")["status"] == "skipped"
    assert task(events, "c", "summary")["status"] == "succeeded"


def test_a_bad_template_fails_only_its_task(runner: Runner) -> None:
    plan = tuned(plan_of({"id": "s", "tasks": [_task("a", "ok ${{ fromJSON('not json') }}")]}))
    code, events = runner.run(plan)
    a = task(events, "s", "a")
    assert code == 1
    assert (a["status"], a["failure_kind"]) == ("failed", "setup_failed")
