"""Executor overhead: 200 trivial agent runs at max_parallel 16, the runner versus
``xargs -P16`` running the same commands; the runner twice: the v1 plan, and the same
tasks as a v2 plan with its guardrails on (an attempt timeout, an idle timeout and
retries, none of which fires), which adds the timers' checks to every turn of the loop.

The agent is a tiny shell script that prints a stream-json ``system``/``init`` line and
a ``result`` line, so the process start dominates and what is left is the runner's own
cost per task: config dir seeding, log files, events, the orphan sweep. The runner side
is ``run_pipeline`` called in this process (events go to a file); the baseline is
``xargs -P16 -L1 setsid <agent>`` fed the same argument lines, output to a file. The
agent starts in a session of its own on both sides (the runner does that for every
task): with the kernel's autogroup scheduling a session is a CPU group, and on a machine
others use too, agents sharing xargs's one session got a fraction of the CPU the
runner's got (see ``graph_overhead.py``). Rounds alternate runner v1, runner v2, xargs,
...; fresh directories each round, removed only at the end. Everything works in
``$BENCH_TMP`` (default ``/dev/shm`` when present): on the ext4 disk here, file creation
is slowed for minutes after any large delete (another run's clean-up, another
developer's), which swung this ratio between 0.9 and 2.2 from one run to the next;
tmpfs measures the executor rather than the disk's state.

Prints details on stderr and two lines on stdout (goal for both: at most 1.30):
``executor_overhead: runner/xargs=X.XX`` and
``executor_overhead_v2_guardrails: runner/xargs=X.XX``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import _plans  # noqa: E402
import _repo  # noqa: E402
from claude_runner import proc  # noqa: E402
from claude_runner.pipeline.executor import run_pipeline  # noqa: E402
from claude_runner.plan.models import Plan, resolve  # noqa: E402
from claude_runner.plan.resolved import ResolvedPlan  # noqa: E402
from claude_runner.runtime import Runtime  # noqa: E402

ROUNDS = 7
TASKS = 200
PARALLEL = 16
# v2 guardrails that never fire here: generous limits, the default retry policy.
GUARDRAILS = {"timeout": 600, "idle_timeout": 300, "retries": {"max": 2}}
AGENT = """#!/bin/sh
printf '%s\\n' '{"type":"system","subtype":"init","session_id":"s-'$$'"}'
printf '%s\\n' '{"type":"result","subtype":"success","is_error":false,"result":"ok","num_turns":1}'
"""


def main() -> int:
    base_dir = os.environ.get("BENCH_TMP") or ("/dev/shm" if Path("/dev/shm").is_dir() else None)
    print(f"working in {base_dir or tempfile.gettempdir()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="executor-overhead-", dir=base_dir) as tmp_name:
        tmp = Path(tmp_name)
        agent = tmp / "agent"
        agent.write_text(AGENT)
        agent.chmod(0o755)
        workspace = tmp / "ws"
        workspace.mkdir()
        (tmp / "home").mkdir()
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp / "home")}
        plan = resolve(
            Plan.model_validate(
                {
                    "version": "v1",
                    "stages": [
                        {
                            "id": "s",
                            "mode": "parallel",
                            "max_parallel": PARALLEL,
                            "tasks": [
                                {"id": f"t{i}", "prompt": f"task {i}", "read_only": True}
                                for i in range(TASKS)
                            ],
                        }
                    ],
                }
            )
        )
        guarded = guardrails_plan()
        lines = tmp / "args.txt"
        lines.write_text(
            "".join(
                f"-p 'task {i}' --verbose --output-format stream-json "
                "--dangerously-skip-permissions\n"
                for i in range(TASKS)
            )
        )

        def runner(round_no: int, plan: ResolvedPlan = plan, name: str = "v1") -> float:
            root = tmp / f"runs-{name}-{round_no}"
            with (tmp / f"events-{name}-{round_no}.jsonl").open("w") as out:
                start = time.perf_counter()
                code = run_pipeline(
                    plan,
                    Runtime.from_env(
                        {**env, "PIPELINE_WORKSPACES_ROOT": str(root)}, claude_bin=str(agent)
                    ),
                    workspace=workspace,
                    plan_path=Path("plan.yml"),
                    out=out,
                )
                elapsed = time.perf_counter() - start
            assert code == 0, f"runner {name} round {round_no} failed"
            return elapsed

        def runner_v2(round_no: int) -> float:
            return runner(round_no, guarded, "v2")

        def xargs(round_no: int) -> float:
            out = tmp / f"xargs-{round_no}.out"
            command = f"xargs -P{PARALLEL} -L1 setsid {agent} < {lines} > {out}"
            elapsed = _repo.timed_shell(command, env)
            assert out.read_text().count('"type":"result"') == TASKS
            return elapsed

        methods = {"runner": runner, "runner_v2": runner_v2, "xargs": xargs}
        times = rounds(methods)
        proc.run(["chmod", "-R", "u+w", tmp_name])
    base = statistics.median(times["xargs"])
    print(f"executor_overhead: runner/xargs={statistics.median(times['runner']) / base:.2f}")
    print(
        "executor_overhead_v2_guardrails: "
        f"runner/xargs={statistics.median(times['runner_v2']) / base:.2f}"
    )
    return 0


def guardrails_plan() -> ResolvedPlan:
    """The same tasks as a v2 plan with GUARDRAILS on every task."""
    tasks = [{"id": f"t{i}", "prompt": f"task {i}", "read_only": True} for i in range(TASKS)]
    stage = {"id": "s", "mode": "parallel", "max_parallel": PARALLEL, "tasks": tasks}
    defaults = {"workspace": "shared", **GUARDRAILS}
    return _plans.resolved({"version": "v2", "defaults": defaults, "stages": [stage]})


def rounds(methods: Mapping[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """A warm-up of each method (imports, page cache), then ROUNDS rounds running each
    once in turn; seconds per method and round (each round and the medians on stderr)."""
    for method in methods.values():
        method(-1)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for i in range(ROUNDS):
        for name, method in methods.items():
            times[name].append(method(i))
        shown = ", ".join(f"{name} {t[-1]:.3f} s" for name, t in times.items())
        print(f"round {i}: {shown}", file=sys.stderr)
    _repo.print_medians(times)
    return times


if __name__ == "__main__":
    sys.exit(main())
