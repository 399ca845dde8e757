"""Executor overhead: 200 trivial agent runs at max_parallel 16, the runner versus
``xargs -P16`` running the same commands.

The agent is a tiny shell script that prints a stream-json ``system``/``init`` line and
a ``result`` line, so the process start dominates and what is left is the runner's own
cost per task: config dir seeding, log files, a thread, events, the orphan sweep. The
runner side is ``run_pipeline`` called in this process (events go to a file); the
baseline is ``xargs -P16 -L1 <agent>`` fed the same argument lines, output to a file.
Rounds alternate runner, xargs, runner, ...; fresh directories each round, removed only
at the end. Both sides work in ``$BENCH_TMP`` (default ``/dev/shm`` when present): on the
ext4 disk here, file creation is slowed for minutes after any large delete (another
run's clean-up, another developer's), which swung this ratio between 0.9 and 2.2 from
one run to the next; tmpfs measures the executor rather than the disk's state.

Prints details on stderr and one line on stdout:
``executor_overhead: runner/xargs=X.XX`` (goal: at most 1.30).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import _repo  # noqa: E402
from claude_runner import proc  # noqa: E402
from claude_runner.pipeline.executor import run_pipeline  # noqa: E402
from claude_runner.plan.models import Plan, resolve  # noqa: E402
from claude_runner.runtime import Runtime  # noqa: E402

ROUNDS = 7
TASKS = 200
PARALLEL = 16
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
        lines = tmp / "args.txt"
        lines.write_text(
            "".join(
                f"-p 'task {i}' --verbose --output-format stream-json "
                "--dangerously-skip-permissions\n"
                for i in range(TASKS)
            )
        )

        def runner(round_no: int) -> float:
            root = tmp / f"runs-{round_no}"
            with (tmp / f"events-{round_no}.jsonl").open("w") as out:
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
            assert code == 0, f"runner round {round_no} failed"
            return elapsed

        def xargs(round_no: int) -> float:
            out = tmp / f"xargs-{round_no}.out"
            command = f"xargs -P{PARALLEL} -L1 {agent} < {lines} > {out}"
            elapsed = _repo.timed_shell(command, env)
            assert out.read_text().count('"type":"result"') == TASKS
            return elapsed

        # The warm-up round does the imports and fills the page cache.
        ours, base = _repo.alternate(runner, xargs, rounds=ROUNDS, names=("runner", "xargs"))
        proc.run(["chmod", "-R", "u+w", tmp_name])
    ratio = statistics.median(ours) / statistics.median(base)
    print(f"executor_overhead: runner/xargs={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
