"""Reports of a large run: a synthetic run directory of 1,000 tasks (v2 layout, events and
result, as ``tests/rundirs.py`` writes them) whose agent logs hold about 50 KB of
transcript each (tool calls with results), 50 MB in all.

Measures, median of 5 rounds in one process (the directory is made once; nothing is
deleted between rounds): the HTML report (reading the run directory, the logs' tails for
per-model usage, the transcript windows, rendering) and its size, and the JUnit report
(reading the run directory, rendering). Wall seconds, and the process's CPU seconds
beside them (on a shared machine the wall time swings with the load; the CPU time is
the work)::

    report: html_s=X html_mb=Y junit_s=Z (cpu_s: html=A junit=B)

Goals: HTML <= 1.0 s and <= 5 MB; JUnit <= 0.2 s.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests import rundirs  # noqa: E402
from tests.rundirs import Attempt, RunBuilder, TaskSpec  # noqa: E402

from claude_runner.redact import Redactor  # noqa: E402
from claude_runner.reports import render  # noqa: E402
from claude_runner.reports.rundir import read_run  # noqa: E402

TASKS = 1000
ROUNDS = 5


def make_run(root: Path) -> Path:
    """1,000 tasks in 4 parallel stages; every 10th task failed once then succeeded, every
    25th failed."""
    b = RunBuilder(root)
    stages = []
    for s in range(4):
        tasks = []
        for n in range(TASKS // 4):
            tid = f"task-{n:03d}"
            log = rundirs.transcript(f"{s}-{n}", tools=24, pad=1900, cost=0.02)
            attempts = [Attempt(log=log, cost=0.02, duration=5.0 + n % 7)]
            if n % 10 == 0:
                first = Attempt(
                    status="failed",
                    failure_kind="rate_limited",
                    reason="API Error: 429",
                    log=rundirs.init_line(f"{s}-{n}-1"),
                    cost=0.0,
                    duration=1.0,
                )
                attempts.insert(0, first)
            if n % 25 == 0:
                attempts[-1] = Attempt(
                    status="failed", failure_kind="agent_error", reason="tests fail", log=log
                )
            tasks.append(TaskSpec(f"stage-{s}", tid, attempts=attempts))
        stages.append((f"stage-{s}", "parallel", tasks))
    b.start(stages)
    for sid, mode, tasks in stages:
        b.stage(sid, mode, tasks)
    return b.finish()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        run = make_run(Path(tmp))
        logs = sum(p.stat().st_size for p in run.glob("tasks/*/*/agent.log"))
        redact = Redactor.from_env({"ANTHROPIC_API_KEY": "sk-bench-secret-0123456789"})
        wall: dict[str, list[float]] = {"html": [], "junit": []}
        cpu: dict[str, list[float]] = {"html": [], "junit": []}
        size = 0
        for _ in range(ROUNDS):
            for fmt in ("html", "junit"):
                started, used = time.perf_counter(), time.process_time()
                text = render(read_run(run), fmt, redact=redact, out_dir=run)
                wall[fmt].append(time.perf_counter() - started)
                cpu[fmt].append(time.process_time() - used)
                if fmt == "html":
                    size = len(text.encode())
        print(f"# {TASKS} tasks, {logs / 1e6:.1f} MB of agent logs", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in wall.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        print(
            f"report: html_s={med['html']:.3f} html_mb={size / 1e6:.2f} "
            f"junit_s={med['junit']:.3f} (cpu_s: html={med_cpu['html']:.3f} "
            f"junit={med_cpu['junit']:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
