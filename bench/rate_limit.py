"""Rate limits: 32 tasks at 16 concurrent against an API that bears 4 concurrent
requests and answers 429 above that, through the runner, versus the ideal: the same 32
tasks' work at 4 concurrent.

Both sides run the real pinned CLI (``tools/claude-code``) with
``CLAUDE_CODE_MAX_RETRIES=0`` (a 429 ends the CLI at once: what the runner does about it
is what is measured) against the stand-in Messages API (``claude_runner.standin``) on
127.0.0.1, which answers every request with a short text after ``WORK`` seconds (an API
call dominates a real agent's time) and refuses a request with 429 while 4 others are in
flight (``StandinAPI.limit_concurrency``). The runner runs a v2 plan of 32 tasks in one
parallel stage, ``max_parallel: 16``, the default retries (at most 2 more attempts on
``rate_limited``, full-jitter backoff from 5 s, capped at 2 min); its answer to the 429s
is ``pipeline/pressure.py``. The ideal is measured, not computed: the same 32 CLI
command lines through ``xargs -P4`` against the same stand-in, so the 4 slots never
wait for a 429; the time of one task alone is printed next to it. Each CLI gets its own
``CLAUDE_CONFIG_DIR`` and session on both sides, as the runner gives them. Rounds
alternate runner, ideal; everything works in ``$BENCH_TMP`` (default ``/dev/shm``).

Prints details on stderr (per round: tasks succeeded, 429s answered, retries, the wall
times) and one line on stdout:
``rate_limit: succeeded=N/32 wall/ideal=X.XX`` (N: the worst round; goal 32/32 and at
most 1.5).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import _plans  # noqa: E402
import _repo  # noqa: E402
from claude_runner.pipeline.executor import run_pipeline  # noqa: E402
from claude_runner.runtime import Runtime  # noqa: E402
from claude_runner.standin.replies import Text  # noqa: E402
from claude_runner.standin.server import StandinAPI  # noqa: E402

ROUNDS = 3
TASKS = 32
PARALLEL = 16
API_CONCURRENCY = 4
WORK = 2.0  # seconds the stand-in takes to answer each request
CLI = ROOT / "tools" / "claude-code" / "node_modules" / ".bin" / "claude"
CLI_ARGS = "-p --verbose --output-format stream-json --dangerously-skip-permissions --"


def main() -> int:
    if not CLI.exists():
        sys.exit("rate_limit: the pinned CLI is missing; run scripts/setup.sh")
    base_dir = os.environ.get("BENCH_TMP") or ("/dev/shm" if Path("/dev/shm").is_dir() else None)
    print(
        f"working in {base_dir or tempfile.gettempdir()}; load {os.getloadavg()}", file=sys.stderr
    )
    api = StandinAPI().start()
    try:
        api.default(Text("ok", delay=WORK))
        api.limit_concurrency(API_CONCURRENCY)
        with tempfile.TemporaryDirectory(prefix="rate-limit-", dir=base_dir) as name:
            succeeded, ratio = measure(Path(name), str(CLI.resolve()), api)
    finally:
        api.stop()
    print(f"load after: {os.getloadavg()}", file=sys.stderr)
    print(f"rate_limit: succeeded={succeeded}/{TASKS} wall/ideal={ratio:.2f}")
    return 0


def measure(tmp: Path, cli: str, api: StandinAPI) -> tuple[int, float]:
    """The worst round's number of succeeded tasks, and the median of wall/ideal."""
    workspace = tmp / "ws"
    workspace.mkdir()
    (tmp / "home").mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp / "home"),
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_API_KEY": "sk-bench-dummy-0000",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "IS_SANDBOX": "1",  # the CLI refuses --dangerously-skip-permissions as root otherwise
        "NO_PROXY": "127.0.0.1,localhost",
    }
    tasks = [{"id": f"t{i}", "prompt": f"task {i}", "read_only": True} for i in range(TASKS)]
    plan = _plans.resolved(
        {
            "version": "v2",
            "defaults": {"workspace": "shared"},
            "stages": [{"id": "s", "mode": "parallel", "max_parallel": PARALLEL, "tasks": tasks}],
        }
    )
    lines = tmp / "args.txt"
    lines.write_text("".join(f"{CLI_ARGS} 'task {i}'\n" for i in range(TASKS)))
    counts: list[int] = []

    def runner(round_no: int) -> float:
        events = io.StringIO()
        before = api.stats().rejected
        start = time.perf_counter()
        run_pipeline(
            plan,
            Runtime.from_env(
                {**env, "PIPELINE_WORKSPACES_ROOT": str(tmp / f"runs-{round_no}")}, claude_bin=cli
            ),
            workspace=workspace,
            plan_path=Path("plan.yml"),
            out=events,
        )
        elapsed = time.perf_counter() - start
        parsed = [json.loads(line) for line in events.getvalue().splitlines()]
        result = parsed[-1]
        ok = sum(t["status"] == "succeeded" for t in result["tasks"])
        retries = sum(e["type"] == "pipeline_event.task_retry" for e in parsed)
        kinds = sorted({str(t["failure_kind"]) for t in result["tasks"] if t["failure_kind"]})
        print(
            f"  runner round {round_no}: {ok}/{TASKS} succeeded, "
            f"{api.stats().rejected - before} answered 429, {retries} retries"
            + (f", failures: {', '.join(kinds)}" if kinds else ""),
            file=sys.stderr,
        )
        if round_no >= 0:
            counts.append(ok)
        return elapsed

    def ideal(round_no: int) -> float:
        configs = tmp / f"configs-{round_no}"
        configs.mkdir()
        one = f'CLAUDE_CONFIG_DIR={shlex.quote(str(configs))}/$$ exec {shlex.quote(cli)} "$@"'
        out = tmp / f"ideal-{round_no}.out"
        before = api.stats().rejected
        command = (
            f"cd {shlex.quote(str(workspace))} && xargs -P{API_CONCURRENCY} -L1 "
            f"setsid sh -c {shlex.quote(one)} sh < {lines} > {out}"
        )
        elapsed = _repo.timed_shell(command, env)
        assert out.read_text().count('"is_error":false') == TASKS, "the ideal run failed"
        assert api.stats().rejected == before, "the ideal run hit the concurrency limit"
        return elapsed

    def alone(round_no: int) -> float:
        config = tmp / f"alone-{round_no}"
        command = (
            f"cd {shlex.quote(str(workspace))} && CLAUDE_CONFIG_DIR={shlex.quote(str(config))} "
            f"{shlex.quote(cli)} {CLI_ARGS} 'task alone' > /dev/null"
        )
        return _repo.timed_shell(command, env)

    ours, base = _repo.alternate(runner, ideal, rounds=ROUNDS, names=("runner", "ideal"))
    single = [alone(i) for i in range(ROUNDS)]
    work = statistics.median(base) * API_CONCURRENCY / TASKS
    print(
        f"per-task work: {statistics.median(single):.2f} s alone, {work:.2f} s at "
        f"{API_CONCURRENCY} concurrent (ideal wall / {TASKS // API_CONCURRENCY})",
        file=sys.stderr,
    )
    return min(counts), _repo.paired_ratio(ours, base)


if __name__ == "__main__":
    sys.exit(main())
