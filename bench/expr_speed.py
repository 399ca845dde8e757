"""Expression cost: parsing a 1,000-task plan's templates, and evaluating them.

The plan (100 stages x 10 tasks) has what a v2 plan templates: a prompt with two
``${{ }}``, a ``when`` on every other task, a ``check.run`` with a substituted value on
every third, a ``for_each`` on every tenth. ``yaml.safe_load`` of the same text is the
yardstick: the issue allows a v2 plan with templates to load in at most 3.0x its time, so
the share parsing takes matters. Then the scheduler's view: evaluating 10,000 ``when``
conditions and rendering 10,000 prompts, in microseconds each.

Prints details on stderr and exactly one line on stdout:
``expr_speed: parse/safe_load=X.XXX when_us=X.X render_us=X.X``.
"""

from __future__ import annotations

import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from claude_runner.expr import (  # noqa: E402
    Expression,
    Template,
    parse_condition,
    parse_template,
)

ROUNDS = 5
STAGES = 100
PER_STAGE = 10
EVALUATIONS = 10_000


def plan_text() -> str:
    lines = ["version: v2", "stages:"]
    for s in range(STAGES):
        lines += [f"  - id: s{s:03d}", "    tasks:"]
        for t in range(PER_STAGE):
            up = f"t{s - 1:03d}x{t:02d}" if s else "planner"
            lines += [
                f"      - id: t{s:03d}x{t:02d}",
                f'        prompt: "Review ${{{{ tasks.{up}.result }}}} and fix module '
                f'${{{{ tasks.{up}.output.modules[{t}] }}}}; keep the public API stable."',
            ]
            if t % 2 == 0:
                lines.append(
                    f"        when: ${{{{ tasks.{up}.status == 'failed' || "
                    f"tasks.{up}.output.approved == false }}}}"
                )
            if t % 3 == 0:
                lines += [
                    "        check:",
                    f'          run: "pytest -q tests/${{{{ tasks.{up}.branch }}}}"',
                ]
            if t % 10 == 0:
                lines.append(f"        for_each: ${{{{ tasks.{up}.output.modules }}}}")
    return "\n".join(lines) + "\n"


def parse_all(plan: dict[str, list[dict[str, list[dict[str, object]]]]]) -> list[object]:
    parsed: list[object] = []
    for stage in plan["stages"]:
        for task in stage["tasks"]:
            for key in ("prompt", "for_each"):
                value = task.get(key)
                if isinstance(value, str):
                    parsed.append(parse_template(value))
            when = task.get("when")
            if isinstance(when, str):
                parsed.append(parse_condition(when))
            check = task.get("check")
            if isinstance(check, dict):
                parsed.append(parse_template(check["run"]))
    return parsed


def _median(action: Callable[[], object], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    text = plan_text()
    plan = yaml.safe_load(text)
    parsed = parse_all(plan)
    runs: dict[str, list[float]] = {"safe_load": [], "parse": []}
    for _ in range(ROUNDS):  # alternate, so both sides see the same machine
        runs["safe_load"].append(_median(lambda: yaml.safe_load(text), 1))
        runs["parse"].append(_median(lambda: parse_all(plan), 1))
    med = {name: statistics.median(times) for name, times in runs.items()}

    context = {
        "tasks": {
            f"t{s:03d}x{t:02d}": {
                "status": "succeeded" if (s + t) % 7 else "failed",
                "result": "All good. " * 20,
                "branch": f"runner/t{s:03d}x{t:02d}",
                "output": {"approved": bool(t % 3), "modules": [f"m{i}" for i in range(10)]},
            }
            for s in range(STAGES)
            for t in range(PER_STAGE)
        }
        | {"planner": {"status": "succeeded", "output": {"modules": ["a", "b"]}}}
    }
    whens = [p for p in parsed if isinstance(p, Expression)]
    prompts = [p for p in parsed if isinstance(p, Template)]
    functions = {"success": lambda: True, "always": lambda: True, "failure": lambda: False}

    def evaluate_whens() -> None:
        for i in range(EVALUATIONS):
            whens[i % len(whens)].evaluate(context, functions)

    def render_prompts() -> None:
        for i in range(EVALUATIONS):
            prompts[i % len(prompts)].render(context, functions, shlex.quote)

    when_us = _median(evaluate_whens) / EVALUATIONS * 1e6
    render_us = _median(render_prompts) / EVALUATIONS * 1e6
    print(
        f"plan: {STAGES * PER_STAGE} tasks, {len(text)} bytes, {len(parsed)} templates "
        f"and conditions",
        file=sys.stderr,
    )
    for name, times in runs.items():
        print(
            f"  {name:<9} median {med[name] * 1000:.1f} ms  runs "
            f"{[round(t * 1000, 1) for t in times]}",
            file=sys.stderr,
        )
    print(
        f"expr_speed: parse/safe_load={med['parse'] / med['safe_load']:.3f} "
        f"when_us={when_us:.1f} render_us={render_us:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
