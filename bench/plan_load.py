"""Plan loading cost: the runner's ``load_plan`` versus a bare ``yaml.safe_load``.

A generated plan of 1,000 tasks (100 stages x 10, a mix of sequential and parallel
stages, inline prompts and prompt files, per-level settings) is read both ways, side by
side and alternating (runner, safe_load, runner, ...), ``ROUNDS`` times each; the median
of each is compared. Like for like: both sides use PyYAML's pure-Python ``SafeLoader``
(the runner composes with a subclass of it), so the ratio is the price of line
tracking, duplicate-key and tag checks, alias bounds and pydantic validation.

Prints details on stderr and exactly one line on stdout:
``plan_load: runner/safe_load=X.XX`` (goal: at most 3.0).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from claude_runner.plan.loader import load_plan  # noqa: E402

ROUNDS = 5
STAGES = 100
TASKS_PER_STAGE = 10


def plan_text(stages: int = STAGES, per_stage: int = TASKS_PER_STAGE) -> str:
    lines = [
        "version: v1",
        "defaults:",
        "  model: sonnet",
        "  verbosity: stream-json",
        "  on_error: continue",
        "  workspace: shared",
        "stages:",
    ]
    for s in range(stages):
        parallel = s % 2 == 1
        lines += [f"  - id: stage-{s:03d}", f"    mode: {'parallel' if parallel else 'sequential'}"]
        if parallel:
            lines += ["    max_parallel: 4", "    workspace: worktree"]
        lines.append("    tasks:")
        for t in range(per_stage):
            lines.append(f"      - id: task-{t:02d}")
            if t % 3 == 0:
                lines.append(f"        prompt_file: prompts/stage-{s:03d}/task-{t:02d}.md")
            else:
                lines.append(
                    f'        prompt: "Stage {s}, task {t}: review the module, list the risks '
                    'and fix what is broken; keep the public API stable."'
                )
            if t % 4 == 0:
                lines.append("        model: opus")
            if parallel and t % 5 == 0:
                lines += ["        workspace: shared", "        read_only: true"]
    return "\n".join(lines) + "\n"


def _time(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="plan-load-") as tmp:
        path = Path(tmp) / "plan.yaml"
        path.write_text(plan_text(), encoding="utf-8")
        plan = load_plan(path)  # warm-up, and proof the plan is valid
        count = sum(len(stage.tasks) for stage in plan.stages)

        def runner() -> object:
            return load_plan(path)

        def safe_load() -> object:
            return yaml.safe_load(path.read_text(encoding="utf-8"))

        safe_load()
        runs: dict[str, list[float]] = {"runner": [], "safe_load": []}
        for _ in range(ROUNDS):
            runs["runner"].append(_time(runner))
            runs["safe_load"].append(_time(safe_load))
        size = path.stat().st_size

    med = {name: statistics.median(times) for name, times in runs.items()}
    print(
        f"plan: {count} tasks, {size} bytes; loader: pure-Python SafeLoader on both sides",
        file=sys.stderr,
    )
    for name, times in runs.items():
        print(
            f"  {name:<9} median {med[name]:.3f} s  runs {[round(t, 3) for t in times]}",
            file=sys.stderr,
        )
    print(f"plan_load: runner/safe_load={med['runner'] / med['safe_load']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
