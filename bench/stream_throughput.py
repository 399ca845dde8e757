"""Stream throughput: 500 MB of stream-json lines through the runner's stream path
versus ``cat``.

Runner side: a child Python process runs a one-task plan through ``run_pipeline`` whose
agent is ``exec cat FILE``: the stage loop reads the pipe, writes the task log (secrets
masked), parses the ``system``/``init`` and ``result`` lines, exactly as for the real
CLI at verbosity ``text``; it reports its time and its own peak RSS. Baseline: ``cat
FILE | cat > LOG`` (the second ``cat`` does the runner's job: read a pipe, write a log).
Rounds alternate runner, cat, runner, ...; every round writes a fresh log, all removed
at the end.

Prints details on stderr and one line on stdout:
``stream_throughput: runner=XXX MB/s cat=YYY MB/s runner/cat=Z.ZZ peak_rss=NN MB``
(goals: runner at least 200 MB/s, peak RSS at most 100 MB).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from claude_runner import proc  # noqa: E402

ROUNDS = 5
SIZE = 500 * 1000 * 1000
SECRET = "sk-ant-bench-secret-0123456789abcdef"  # noqa: S105 - a dummy to mask

CHILD = r"""
import io, json, os, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from claude_runner.pipeline.executor import run_pipeline
from claude_runner.runtime import Runtime
from claude_runner.plan.models import Plan, resolve

tmp = Path(sys.argv[2])
agent = tmp / "agent"
agent.write_text(f"#!/bin/sh\nexec cat {sys.argv[1]}\n")
agent.chmod(0o755)
(tmp / "ws").mkdir(exist_ok=True)
plan = resolve(Plan.model_validate(
    {"version": "v1", "stages": [{"id": "s", "tasks": [{"id": "t", "prompt": "go"}]}]}
))
events = io.StringIO()
start = time.perf_counter()
code = run_pipeline(
    plan,
    Runtime.from_env(
        {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp),
            "ANTHROPIC_API_KEY": sys.argv[4],
            "PIPELINE_WORKSPACES_ROOT": str(tmp / "runs"),
        },
        claude_bin=str(agent),
    ),
    workspace=tmp / "ws",
    plan_path=Path("plan.yml"),
    out=events,
)
elapsed = time.perf_counter() - start
task = json.loads(events.getvalue().splitlines()[-1])["tasks"][0]
assert code == 0 and task["session_id"] == "bench" and task["result"] == "ok", task
# VmHWM: peak RSS of this process image (ru_maxrss would carry the parent's across exec)
rss_kb = int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1])
print(json.dumps({"elapsed": elapsed, "rss_kb": rss_kb, "log": task["log"]}))
"""


def make_stream(path: Path) -> int:
    init = {"type": "system", "subtype": "init", "session_id": "bench", "tools": ["Bash"]}
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "ok"}
    text = "lorem ipsum dolor sit amet " * 36
    with path.open("w") as f:
        f.write(json.dumps(init) + "\n")
        written = 0
        i = 0
        while written < SIZE:
            msg = {
                "type": "assistant" if i % 2 else "user",
                "message": {"id": f"m{i}", "content": [{"type": "text", "text": text}]},
                "session_id": "bench",
            }
            line = json.dumps(msg) + "\n"
            f.write(line)
            written += len(line)
            i += 1
        f.write(json.dumps(result) + "\n")
    return path.stat().st_size


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="stream-throughput-", dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "stream.jsonl"
        size = make_stream(source)
        child = tmp / "child.py"
        child.write_text(CHILD)

        logs: list[Path] = []

        def runner(n: int) -> tuple[float, int]:
            done = proc.run(
                [sys.executable, str(child), str(source), str(tmp), str(ROOT / "src"), SECRET],
                timeout=600,
            )
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            logs.append(Path(report["log"]))
            assert logs[-1].stat().st_size == size
            return float(report["elapsed"]), int(report["rss_kb"])

        def cat(n: int) -> float:
            start = time.perf_counter()
            done = proc.run(["sh", "-c", f"cat {source} | cat > {tmp}/c{n}.log"], timeout=600)
            elapsed = time.perf_counter() - start
            assert done.returncode == 0, done.stderr
            return elapsed

        runner(-1)  # warm the page cache
        cat(-1)
        ours: list[float] = []
        rss: list[int] = []
        base: list[float] = []
        for i in range(ROUNDS):
            elapsed, rss_kb = runner(i)
            ours.append(elapsed)
            rss.append(rss_kb)
            base.append(cat(i))
            print(
                f"round {i}: runner {ours[-1]:.3f} s ({rss_kb // 1024} MB), cat {base[-1]:.3f} s",
                file=sys.stderr,
            )
            for log in (logs[-1], tmp / f"c{i}.log"):
                os.truncate(log, 0)  # keep the disk small; no unlink between rounds
    mb = size / 1e6
    runner_rate = mb / statistics.median(ours)
    cat_rate = mb / statistics.median(base)
    print(
        f"stream_throughput: runner={runner_rate:.0f} MB/s cat={cat_rate:.0f} MB/s "
        f"runner/cat={statistics.median(ours) / statistics.median(base):.2f} "
        f"peak_rss={max(rss) // 1024} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
