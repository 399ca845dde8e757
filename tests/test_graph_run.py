"""The v2 task graph at run time, with the fault agent: needs that propagate failures,
conditions, fan-out from a literal list or an upstream output, templates, always() after
fail_fast. Plans go through the real loader. (With the real CLI: test_graph_cli.py.)"""

from __future__ import annotations

import json
from typing import Any

from tests.runs import Runner, of_type, result_of, task, v2_plan


def _task(tid: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "prompt": prompt, **extra}


def test_failures_propagate_to_dependents_only(runner: Runner) -> None:
    plan = v2_plan(
        {
            "defaults": {"on_error": "continue", "workspace": "snapshot_ro", "retries": 0},
            "stages": [
                {
                    "id": "a",
                    "mode": "parallel",
                    "tasks": [_task("bad", "error"), _task("good", "ok")],
                },
                {
                    "id": "b",
                    "mode": "parallel",
                    "needs": [],
                    "tasks": [
                        _task("after-bad", "ok", needs=["a/bad"]),
                        _task("after-good", "ok", needs=["a/good"]),
                        _task("fixer", "ok", needs=["after-bad"], when="failure()"),
                        _task("notify", "ok", needs=["a/bad"], when="${{ always() }}"),
                    ],
                },
            ],
        }
    )
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
    plan = v2_plan(
        {
            "stages": [
                {
                    "id": "s",
                    "tasks": [
                        _task("a", "ok"),
                        _task("b", "ok", when="tasks.a.status == 'failed'"),
                        _task("c", "ok"),
                    ],
                }
            ]
        }
    )
    code, events = runner.run(plan)
    assert code == 0
    b, c = task(events, "s", "b"), task(events, "s", "c")
    assert (b["status"], b["failure_kind"], b["reason"]) == ("skipped", None, "condition false")
    # b's dependent (the next task of a sequential stage) follows the same rule.
    assert (c["status"], c["failure_kind"]) == ("skipped", None)
    assert result_of(events)["status"] == "succeeded"


def test_fan_out_from_an_upstream_output_and_results_downstream(runner: Runner) -> None:
    modules = ["alpha", "beta", "gamma"]
    plan = v2_plan(
        {
            "stages": [
                {
                    "id": "plan",
                    "tasks": [
                        _task(
                            "planner",
                            "output " + json.dumps({"modules": modules}),
                            output_schema={"type": "object"},
                        )
                    ],
                },
                {
                    "id": "port",
                    "mode": "parallel",
                    "workspace": "snapshot_ro",
                    "tasks": [
                        _task(
                            "port",
                            "ok ${{ item }} ${{ index }}",
                            for_each="${{ tasks.planner.output.modules }}",
                        )
                    ],
                },
                {
                    "id": "review",
                    "tasks": [_task("reviewer", "ok ${{ toJSON(tasks.port.results) }}")],
                },
            ]
        }
    )
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
    reviewer = task(events, "review", "reviewer")
    assert reviewer["result"] == f"done: prompt of {len(expected)} characters"
    assert task(events, "port", "port[1]")["workspace"].endswith("/tasks/port/port[1]/workspace")


def test_an_empty_fan_out_lets_dependents_run(runner: Runner) -> None:
    plan = v2_plan(
        {"stages": [{"id": "s", "tasks": [_task("each", "ok", for_each=[]), _task("after", "ok")]}]}
    )
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
    plan = v2_plan(
        {
            "defaults": {"retries": 0},
            "stages": [
                {"id": "a", "tasks": [_task("bad", "error")]},
                {"id": "b", "tasks": [_task("next", "ok")]},
                {"id": "c", "needs": ["a/bad"], "tasks": [_task("summary", "ok", when="always()")]},
            ],
        }
    )
    code, events = runner.run(plan)
    assert code == 1
    assert task(events, "b", "next")["status"] == "skipped"
    assert task(events, "c", "summary")["status"] == "succeeded"


def test_a_bad_template_fails_only_its_task(runner: Runner) -> None:
    plan = v2_plan(
        {"stages": [{"id": "s", "tasks": [_task("a", "ok ${{ fromJSON('not json') }}")]}]}
    )
    code, events = runner.run(plan)
    a = task(events, "s", "a")
    assert code == 1
    assert (a["status"], a["failure_kind"]) == ("failed", "setup_failed")
    assert "fromJSON" in a["reason"]


def test_two_wide_v1_stages_meet_at_one_barrier(runner: Runner) -> None:
    # A v1 stage after a wide one waits for all of it; the graph holds that with one
    # barrier node instead of every pair of tasks.
    wide = [{"id": f"t{i}", "prompt": "ok"} for i in range(20)]
    plan = {
        "version": "v1",
        "stages": [
            {"id": "a", "mode": "parallel", "workspace": "snapshot_ro", "tasks": wide},
            {"id": "b", "mode": "parallel", "workspace": "snapshot_ro", "tasks": wide},
        ],
    }
    code, events = runner.run(plan)
    assert code == 0
    order = [(e["type"].split(".")[-1], e.get("stage_id")) for e in events]
    last_a = max(i for i, (t, s) in enumerate(order) if t == "task_finish" and s == "a")
    first_b = min(i for i, (t, s) in enumerate(order) if t == "task_start" and s == "b")
    assert last_a < first_b
    assert task(events, "b", "t0")["needs"] == ["20 tasks before stage b"]
