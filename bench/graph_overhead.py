"""Graph overhead: a seeded random DAG of 1,000 trivial tasks at 16 concurrent, the runner
versus a shell script running each topological layer with ``xargs -P16``; then the
runner's own cost per task at 1,000 and at 10,000 tasks (the scheduler's scaling).

The DAG: task ``i`` needs ``min(i, randint(0, 6))`` tasks drawn uniformly from the tasks
before it (3 on average; about one task in seven is a root), split into stages of 100
tasks whose stage-level ``needs`` is empty, so only the tasks' own needs order the run
(a plan of 10,000 tasks then has 100 stages: a scheduler that walks every stage on every
event would show here). Plan-wide ``max_concurrency: 16``, the v2 guardrails at their
defaults (timeouts, retries; none fires). The agent is a tiny shell script printing an
init line and a result (as in ``executor_overhead.py``): a Python agent's own start-up
(about 50 ms of CPU each) made both sides wait on the agents' CPU, not the scheduler.

The baseline runs the same agent command lines, layer after layer (a layer holds the
tasks whose needs are all in earlier layers), each layer with ``xargs -P16 -L1``: what a
shell script that knows the graph would do. It waits for the slowest task of each layer;
the runner starts a task as soon as its own needs are done. Each agent starts in a
session of its own (``setsid``), as the runner starts them: with the kernel's autogroup
scheduling (``/proc/sys/kernel/sched_autogroup_enabled``) every session is a CPU group
of its own, so on a machine that others use too, agents sharing xargs's one session got
a fraction of the CPU the runner's agents got (50 fault agents at -P16, load 18: 8.1 s
in one session, 2.3 s each in its own) and the ratio measured the machine's load.

The runner's cost per task is the CPU time of the runner's process (user + system, all
its threads; the agents are child processes and not counted) divided by the number of
tasks: on a shared 2-core machine it moves far less than wall time. Rounds alternate
runner, xargs at 1,000 tasks; the 10,000-task rounds run the runner only (its cost is
what scales; the baseline would only double the bench's time). Everything works in
``$BENCH_TMP`` (default ``/dev/shm``), as ``executor_overhead.py`` explains.

Prints details on stderr and on stdout:
``graph_overhead: runner/xargs_layers=X.XX`` (goal: at most 1.30) and
``graph_scaling: runner cpu per task 1k=A ms 10k=B ms ratio=R`` (goal: R at most 1.5).
"""

from __future__ import annotations

import os
import random
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _plans  # noqa: E402
import _repo  # noqa: E402
from claude_runner import proc  # noqa: E402
from claude_runner.pipeline.executor import run_pipeline  # noqa: E402
from claude_runner.plan.resolved import ResolvedPlan  # noqa: E402
from claude_runner.runtime import Runtime  # noqa: E402
from executor_overhead import AGENT  # noqa: E402

SEED = 20261201
ROUNDS = 5
TASKS = 1000
BIG_TASKS = 10_000
BIG_ROUNDS = 3
PARALLEL = 16
STAGE_SIZE = 100
MAX_NEEDS = 6  # needs per task: uniform in 0..MAX_NEEDS, 3 on average
AGENT_ARGS = "-p --verbose --output-format stream-json --dangerously-skip-permissions -- ok"


def random_dag(count: int, seed: int) -> list[list[int]]:
    """Each task's needs (indices of earlier tasks), seeded."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's shape, not a secret
    return [rng.sample(range(i), min(i, rng.randint(0, MAX_NEEDS))) for i in range(count)]


def layers(needs: list[list[int]]) -> list[list[int]]:
    """Topological layers: a task is one layer after the latest of its needs."""
    depth: list[int] = []
    for own in needs:  # needs point backwards: one pass in index order
        depth.append(1 + max((depth[j] for j in own), default=-1))
    out: list[list[int]] = [[] for _ in range(max(depth) + 1)]
    for i, d in enumerate(depth):
        out[d].append(i)
    return out


def dag_plan(needs: list[list[int]]) -> ResolvedPlan:
    """The DAG as a v2 plan (stages of STAGE_SIZE tasks, no stage-level needs)."""

    def ref(i: int) -> str:
        return f"g{i // STAGE_SIZE}/t{i}"

    stages: list[dict[str, Any]] = []
    for start in range(0, len(needs), STAGE_SIZE):
        tasks = [
            {"id": f"t{i}", "prompt": "ok", "read_only": True, "needs": [ref(j) for j in needs[i]]}
            for i in range(start, min(start + STAGE_SIZE, len(needs)))
        ]
        stages.append(
            {"id": f"g{start // STAGE_SIZE}", "mode": "parallel", "needs": [], "tasks": tasks}
        )
    return _plans.resolved(
        {
            "version": "v2",
            "max_concurrency": PARALLEL,
            "defaults": {"workspace": "shared"},
            "stages": stages,
        }
    )


class Bench:
    """One DAG's runner and baseline rounds in a scratch directory."""

    def __init__(self, tmp: Path, agent: str, count: int) -> None:
        self.tmp = tmp / f"n{count}"
        self.tmp.mkdir()
        self.agent = agent
        self.count = count
        needs = random_dag(count, SEED)
        self.plan = dag_plan(needs)
        self.layers = layers(needs)
        self.workspace = self.tmp / "ws"
        self.workspace.mkdir()
        (self.tmp / "home").mkdir()
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(self.tmp / "home")}
        self.cpu: list[float] = []  # the runner's CPU seconds, per round
        average = sum(map(len, needs)) / count
        sizes = [len(layer) for layer in self.layers]
        print(
            f"{count} tasks: {average:.2f} needs on average, {len(sizes)} layers "
            f"(sizes {min(sizes)} to {max(sizes)}, median {statistics.median(sizes):g})",
            file=sys.stderr,
        )
        script = [f"cd {shlex.quote(str(self.workspace))}"]
        for n, layer in enumerate(self.layers):
            args = self.tmp / f"layer-{n:03d}.txt"
            args.write_text(f"{AGENT_ARGS}\n" * len(layer))
            script.append(f"xargs -P{PARALLEL} -L1 setsid {shlex.quote(agent)} < {args}")
        self.script = "\n".join(script) + "\n"

    def runner(self, round_no: int) -> float:
        root = self.tmp / f"runs-{round_no}"
        with (self.tmp / f"events-{round_no}.jsonl").open("w") as out:
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            code = run_pipeline(
                self.plan,
                Runtime.from_env(
                    {**self.env, "PIPELINE_WORKSPACES_ROOT": str(root)}, claude_bin=self.agent
                ),
                workspace=self.workspace,
                plan_path=Path("plan.yml"),
                out=out,
            )
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
        assert code == 0, f"runner round {round_no} failed"
        used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        print(f"  runner cpu: {used / self.count * 1000:.2f} ms per task", file=sys.stderr)
        if round_no >= 0:
            self.cpu.append(used)
        return elapsed

    def xargs(self, round_no: int) -> float:
        out = self.tmp / f"xargs-{round_no}.out"
        elapsed = _repo.timed_shell(f"{{\n{self.script}}} > {out}", self.env)
        assert out.read_text().count('"type":"result"') == self.count
        return elapsed

    def cpu_ms_per_task(self) -> float:
        return statistics.median(self.cpu) / self.count * 1000


def main() -> int:
    base_dir = os.environ.get("BENCH_TMP") or ("/dev/shm" if Path("/dev/shm").is_dir() else None)
    print(
        f"working in {base_dir or tempfile.gettempdir()}; load {os.getloadavg()}", file=sys.stderr
    )
    with tempfile.TemporaryDirectory(prefix="graph-overhead-", dir=base_dir) as tmp_name:
        tmp = Path(tmp_name)
        agent_path = tmp / "agent"
        agent_path.write_text(AGENT)
        agent_path.chmod(0o755)
        agent = str(agent_path)
        small = Bench(tmp, agent, TASKS)
        # The warm-up round does the imports and fills the page cache.
        ours, base = _repo.alternate(
            small.runner, small.xargs, rounds=ROUNDS, names=("runner", "xargs_layers")
        )
        big = Bench(tmp, agent, BIG_TASKS)
        walls = [big.runner(i) for i in range(BIG_ROUNDS)]
        print(
            f"{BIG_TASKS} tasks: runner median {statistics.median(walls):.1f} s of "
            + ", ".join(f"{w:.1f}" for w in walls),
            file=sys.stderr,
        )
        print(f"load after: {os.getloadavg()}", file=sys.stderr)
        proc.run(["chmod", "-R", "u+w", tmp_name])
    ratio = _repo.paired_ratio(ours, base)
    one, ten = small.cpu_ms_per_task(), big.cpu_ms_per_task()
    print(f"graph_overhead: runner/xargs_layers={ratio:.2f}")
    print(
        f"graph_scaling: runner cpu per task 1k={one:.2f} ms 10k={ten:.2f} ms ratio={ten / one:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
