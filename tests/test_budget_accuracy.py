"""The plan's ``budget_usd`` fails closed across a 16-wide stage: the total spend never
exceeds it by more than one turn per running task (issue 11).

Why that bound holds (``pipeline/budget.py``): a task starts only with a reservation that
fits in what is left, and its CLI gets the reservation as ``--max-budget-usd``, which
the CLI checks between turns; so a task overshoots its reservation by less than one of
its turns, and only the tasks still running after the last reservation can take the
total past the limit. The tests check the bound with the most expensive turns of as
many tasks as ever ran at once, and that nothing was lost: every task succeeded, or
failed or was skipped with ``failure_kind: budget``, and the result's ``budget`` section
adds up.

Turns are expensive so that the limit binds: with the real CLI, the stand-in API reports
50,000 output tokens per reply, which the CLI prices at $1 (plus $0.00048 for the
input); for the 20 seeded runs, the fault agent's ``spend`` mode, which does what the
pinned CLI does with ``--max-budget-usd`` (measured, see ``_spend`` in
``tests/fake_agent.py``): it prices its turns, lets the turn that reaches the cap finish,
stops before the next one, and reports what it spent in ``total_cost_usd``. Seeds vary
the number of tasks, their turns and turn prices, pauses between turns (so that tasks
finish in varied orders), some tasks' own ``max_budget_usd``, and the limit (a fraction
of what the tasks would spend without one).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from claude_runner.plan.resolved import ResolvedPlan
from tests.fakeapi import FakeMessagesAPI, Text, ToolUse
from tests.runs import Events, Runner, plan_of, result_of, tuned

pytestmark = pytest.mark.slow

WIDE = 16
SEEDS = range(20)
CLI_TURN_USD = 1.00048  # 50,000 output + 120 input tokens at the CLI's default prices


@dataclasses.dataclass(frozen=True)
class Spec:
    """One task of a run: its prompt and the price of one of its turns."""

    prompt: str
    turn_usd: float
    own_cap: float | None = None


def budget_plan(specs: list[Spec], budget: float) -> ResolvedPlan:
    """A 16-wide stage of the tasks, with the plan's ``budget_usd``; ``on_error:
    continue``, so that a task stopped by its cap does not cancel the others."""
    tasks = [{"id": f"t{i}", "prompt": s.prompt, "read_only": True} for i, s in enumerate(specs)]
    stage = {"id": "s", "mode": "parallel", "max_parallel": WIDE, "tasks": tasks}
    plan = tuned(plan_of(stage, on_error="continue"), top={"budget_usd": budget})
    caps = {f"t{i}": s.own_cap for i, s in enumerate(specs)}
    only = plan.stages[0]
    with_caps = tuple(
        dataclasses.replace(t, controls=dataclasses.replace(t.controls, max_budget_usd=caps[t.id]))
        for t in only.tasks
    )
    return dataclasses.replace(plan, stages=(dataclasses.replace(only, tasks=with_caps),))


def peak_running(events: Events) -> int:
    """Tasks running at once, from the event order (a task_start is written after its
    reservation, its task_finish after the reservation is settled)."""
    running = peak = 0
    for e in events:
        if e["type"] == "pipeline_event.task_start":
            running += 1
            peak = max(peak, running)
        elif e["type"] == "pipeline_event.task_finish":
            running -= 1
    return peak


def check_budget(events: Events, specs: list[Spec], budget: float) -> dict[str, Any]:
    """The bound and the bookkeeping; the result."""
    result = result_of(events)
    tasks = result["tasks"]
    spent = sum(t["total_cost_usd"] or 0.0 for t in tasks)
    peak = peak_running(events)
    assert 1 <= peak <= WIDE
    one_turn_each = sum(sorted((s.turn_usd for s in specs), reverse=True)[:peak])
    assert spent <= budget + one_turn_each + 1e-6, (spent, budget, peak, one_turn_each)
    summary = result["budget"]
    assert summary["limit_usd"] == budget
    assert summary["spent_usd"] == pytest.approx(spent, abs=1e-5)
    assert (summary["estimated_usd"], summary["reserved_usd"]) == (0, 0)
    for t in tasks:
        outcome = (t["status"], t["failure_kind"])
        assert outcome in {("succeeded", None), ("failed", "budget"), ("skipped", "budget")}, t
    return result


def seeded_run(seed: int) -> tuple[list[Spec], float]:
    """The tasks and the limit of one seeded run."""
    rng = random.Random(seed)  # noqa: S311 - a test's variety, not a secret
    specs = []
    for _ in range(rng.randint(WIDE, 3 * WIDE)):
        turns, usd = rng.randint(1, 8), round(rng.uniform(0.05, 2.0), 4)
        pause = rng.choice((0, 0.01, 0.03))
        own = round(rng.uniform(0.5, 6.0), 2) if rng.random() < 0.25 else None
        specs.append(Spec(f"spend {turns} {usd} {pause}", usd, own))
    unbounded = sum(int(s.prompt.split()[1]) * s.turn_usd for s in specs)
    return specs, round(unbounded * rng.uniform(0.2, 0.8), 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_budget_holds_with_the_fault_agent(runner: Runner, seed: int) -> None:
    specs, budget = seeded_run(seed)
    code, events = runner.run(budget_plan(specs, budget))
    result = check_budget(events, specs, budget)
    # The limit bound: some task was stopped or not started for it.
    assert code == 1
    assert any(t["failure_kind"] == "budget" for t in result["tasks"])


@pytest.mark.cli
def test_the_budget_holds_with_the_real_cli(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    usage = {"output_tokens": 50_000}
    turn = ToolUse("Bash", {"command": "true"}, usage=usage)
    fake_api.on("budget", *[turn] * 5, Text("done", usage=usage))
    specs = [Spec("budget", CLI_TURN_USD) for _ in range(20)]  # $6 each without a limit
    budget = 6.0
    code, events = cli.run(budget_plan(specs, budget))
    result = check_budget(events, specs, budget)
    assert code == 1
    outcomes = [(t["status"], t["failure_kind"]) for t in result["tasks"]]
    # Every task that ran was stopped by its cap (a share of the limit, less than a
    # turn), and the tasks left when nothing fitted any more did not start.
    assert ("failed", "budget") in outcomes
    assert ("skipped", "budget") in outcomes
    assert ("succeeded", None) not in outcomes
    turns = {t["num_turns"] for t in result["tasks"] if t["status"] == "failed"}
    assert turns == {1}
