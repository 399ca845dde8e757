"""Executor overhead with the real Claude Code CLI: 32 tasks at max_parallel 16 through
the runner versus ``xargs -P16`` running the same CLI commands.

``executor_overhead.py`` isolates the runner's own cost with a trivial agent; this one
shows what it amounts to next to real agents. Both sides run the pinned CLI
(``tools/claude-code``) against the test suite's stand-in Messages API
(``tests/fakeapi.py``, started here on 127.0.0.1, so nothing leaves the machine), each
answering one short text reply. The xargs side gives every CLI its own
``CLAUDE_CONFIG_DIR`` as the runner does (concurrent CLIs corrupt a shared one). Rounds
alternate runner, xargs, ...; everything works in ``$BENCH_TMP`` (default ``/dev/shm``).

Prints details on stderr and one line on stdout:
``executor_real_cli: runner/xargs=X.XX`` (no goal of its own; expect close to 1).
"""

from __future__ import annotations

import io
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.fakeapi import FakeMessagesAPI  # noqa: E402

import _repo  # noqa: E402
from claude_runner.pipeline.executor import run_pipeline  # noqa: E402
from claude_runner.plan.models import Plan, resolve  # noqa: E402
from claude_runner.runtime import Runtime  # noqa: E402

ROUNDS = 5
TASKS = 32
PARALLEL = 16
CLI = ROOT / "tools" / "claude-code" / "node_modules" / ".bin" / "claude"


def main() -> int:
    if not CLI.exists():
        sys.exit("executor_real_cli: the pinned CLI is missing; run scripts/setup.sh")
    cli = str(CLI.resolve())
    base_dir = os.environ.get("BENCH_TMP") or ("/dev/shm" if Path("/dev/shm").is_dir() else None)
    api = FakeMessagesAPI().start()
    try:
        with tempfile.TemporaryDirectory(prefix="executor-real-cli-", dir=base_dir) as name:
            tmp = Path(name)
            ratio = measure(tmp, cli, api.url)
    finally:
        api.stop()
    print(f"executor_real_cli: runner/xargs={ratio:.2f}")
    return 0


def measure(tmp: Path, cli: str, url: str) -> float:
    workspace = tmp / "ws"
    workspace.mkdir()
    (tmp / "home").mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp / "home"),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "sk-bench-dummy-0000",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "IS_SANDBOX": "1",  # the CLI refuses --dangerously-skip-permissions as root otherwise
        "NO_PROXY": "127.0.0.1,localhost",
    }
    tasks = [{"id": f"t{i}", "prompt": f"task {i}", "read_only": True} for i in range(TASKS)]
    plan = resolve(
        Plan.model_validate(
            {
                "version": "v1",
                "stages": [
                    {"id": "s", "mode": "parallel", "max_parallel": PARALLEL, "tasks": tasks}
                ],
            }
        )
    )
    lines = tmp / "args.txt"
    lines.write_text(
        "".join(
            f"-p 'task {i}' --verbose --output-format stream-json --dangerously-skip-permissions\n"
            for i in range(TASKS)
        )
    )

    def runner(round_no: int) -> float:
        events = io.StringIO()
        start = time.perf_counter()
        code = run_pipeline(
            plan,
            Runtime.from_env(
                {**env, "PIPELINE_WORKSPACES_ROOT": str(tmp / f"runs-{round_no}")}, claude_bin=cli
            ),
            workspace=workspace,
            plan_path=Path("plan.yml"),
            out=events,
        )
        elapsed = time.perf_counter() - start
        assert code == 0, events.getvalue()[-2000:]
        return elapsed

    def xargs(round_no: int) -> float:
        configs = tmp / f"configs-{round_no}"
        configs.mkdir()
        one = f'CLAUDE_CONFIG_DIR={shlex.quote(str(configs))}/$$ exec {shlex.quote(cli)} "$@"'
        out = tmp / f"xargs-{round_no}.out"
        command = (
            f"cd {shlex.quote(str(workspace))} && "
            f"xargs -P{PARALLEL} -L1 sh -c {shlex.quote(one)} sh < {lines} > {out}"
        )
        elapsed = _repo.timed_shell(command, env)
        assert out.read_text().count('"type":"result"') == TASKS
        return elapsed

    # The warm-up round puts the CLI's files in the page cache.
    ours, base = _repo.alternate(runner, xargs, rounds=ROUNDS, names=("runner", "xargs"))
    return statistics.median(ours) / statistics.median(base)


if __name__ == "__main__":
    sys.exit(main())
