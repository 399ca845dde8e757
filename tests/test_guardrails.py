"""Guardrails for unattended runs, under faults the real CLI cannot be made to produce on
demand: a hang before any answer, silence, a result and no exit, crashes that a retry
fixes, a plan timeout (the fault agent, tests/fake_agent.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_runner.pipeline import scheduler
from tests.runs import (
    Runner,
    fast_retries,
    marked_processes,
    of_type,
    plan_of,
    result_of,
    stage,
    task,
    tuned,
)

FAST = fast_retries(2)


def test_an_attempt_that_runs_too_long_is_stopped(runner: Runner) -> None:
    code, events = runner.run(tuned(plan_of(stage("s", "sleep 60")), timeout=0.5))
    t = task(events, "s", "t0")
    assert code == 1
    assert (t["status"], t["failure_kind"]) == ("failed", "timeout")
    assert t["reason"] == "the attempt's timeout (0.5 s) expired"
    assert t["duration_s"] < 30  # stopped, not waited for (a bound, not a timing)
    assert marked_processes(result_of(events)["plan_run_id"]) == []


def test_silence_is_an_idle_timeout_and_steady_output_is_not(runner: Runner) -> None:
    plan = plan_of(
        stage("s", "silent", "drip 8 0.1", mode="parallel", workspace="snapshot_ro"),
        on_error="continue",
    )
    code, events = runner.run(tuned(plan, idle_timeout=0.6, retries=fast_retries(0)))
    assert code == 1
    silent, dripping = task(events, "s", "t0"), task(events, "s", "t1")
    assert (silent["status"], silent["failure_kind"]) == ("failed", "idle_timeout")
    assert "no output from the CLI for 0.6 s" in silent["reason"]
    assert dripping["status"] == "succeeded"  # 0.8 s in all, never 0.6 s silent


def test_a_result_then_no_exit_is_stopped_and_keeps_its_result(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler, "RESULT_GRACE", 0.3)
    code, events = runner.run(plan_of(stage("s", "linger")))
    t = task(events, "s", "t0")
    assert code == 0, t
    assert (t["status"], t["result"]) == ("succeeded", "done, but lingering")
    assert "the CLI did not exit after its result: stopped" in t["notes"]
    assert t["signal"] is not None  # it was stopped, yet the result decides
    assert marked_processes(result_of(events)["plan_run_id"]) == []


def test_a_crash_is_retried_from_the_tasks_starting_state(runner: Runner) -> None:
    counter = runner.tmp / "count"
    plan = plan_of(stage("s", f"flaky {counter} 2", workspace="worktree"))
    code, events = runner.run(tuned(plan, retries=FAST))
    t = task(events, "s", "t0")
    assert code == 0, t
    assert counter.read_text() == "3"
    assert [(a["attempt"], a["status"], a["failure_kind"]) for a in t["attempts"]] == [
        (1, "failed", "crash"),
        (2, "failed", "crash"),
        (3, "succeeded", None),
    ]
    retries = of_type(events, "task_retry")
    assert [(e["attempt"], e["kind"]) for e in retries] == [(2, "crash"), (3, "crash")]
    assert all(0 <= e["delay_s"] <= 0.1 for e in retries)
    starts = of_type(events, "task_start")
    assert [e["attempt"] for e in starts] == [1, 2, 3]
    assert len(of_type(events, "task_finish")) == 1
    # Each attempt had a fresh copy; the earlier ones are kept beside it.
    task_dir = Path(t["workspace"]).parent
    assert (task_dir / "attempt-1" / "workspace").is_dir()
    assert (task_dir / "attempt-2" / "agent.log").is_file()
    assert t["attempts"][0]["log"] == str(task_dir / "attempt-1" / "agent.log")
    assert t["attempts"][2]["log"] == str(task_dir / "agent.log")


def test_retries_stop_at_max_and_only_for_the_kinds_asked(runner: Runner) -> None:
    counter = runner.tmp / "count"
    plan = plan_of(
        stage("s", f"flaky {counter} 5", "error", mode="parallel", workspace="snapshot_ro"),
        on_error="continue",
    )
    code, events = runner.run(tuned(plan, retries=FAST))
    flaky, error = task(events, "s", "t0"), task(events, "s", "t1")
    assert code == 1
    assert len(flaky["attempts"]) == 3  # the first and FAST.max retries
    assert flaky["failure_kind"] == "crash"
    assert len(error["attempts"]) == 1  # an agent's own error is not retried by default
    assert error["failure_kind"] == "agent_error"


def test_the_plans_timeout_stops_the_run(runner: Runner) -> None:
    plan = plan_of(stage("a", "sleep 60"), stage("b", "ok"))
    code, events = runner.run(tuned(plan, top={"timeout": 0.5}))
    assert code == 1
    a, b = task(events, "a", "t0"), task(events, "b", "t0")
    assert (a["status"], a["failure_kind"]) == ("failed", "timeout")
    assert (b["status"], b["failure_kind"]) == ("skipped", "timeout")
    assert b["reason"] == "the plan's timeout (0.5 s) expired"


def test_max_concurrency_bounds_the_whole_run(runner: Runner) -> None:
    plan = plan_of(
        stage("a", *["sleep 0.3"] * 4, mode="parallel"),
        stage("b", *["sleep 0.3"] * 4, mode="parallel"),
        workspace="snapshot_ro",
    )
    code, events = runner.run(tuned(plan, top={"max_concurrency": 3}))
    assert code == 0
    running = peak = 0
    for e in events:
        if e["type"] == "pipeline_event.task_start":
            running += 1
            peak = max(peak, running)
        elif e["type"] == "pipeline_event.task_finish":
            running -= 1
    assert peak == 3
