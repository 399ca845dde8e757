"""What the live progress table costs the runner: a 64-task parallel stage of the fault
agent streaming (``flood``: 2 MB of assistant lines each, 128 MB through the executor),
run with ``--progress live`` on a terminal against ``off``.

Each run is a child process whose stderr is a pseudo-terminal (120x40) that this process
drains; the child prints its own CPU time (user + system, the runner process alone: the
executor's loop, the observer's calls and the drawing thread; the agents are separate
processes). ``live`` calls the observer as the runner will: ``event(body)`` for every
event (the executor's ``listeners``) and ``activity`` from a ``StreamActivity`` fed with
every block of agent output and with the result message the executor parses (patched
into ``CliRun``'s log writer and message handler). ``off`` runs the executor
untouched. Rounds alternate the two; median of 5 each (BENCH_ROUNDS=N for N). Prints::

    progress: cpu_live/cpu_off=X (cpu_s: live=A off=B)

Goal: <= 1.10. Measured while choosing the renderer (same machine, same load, 200
frames of a 64-task table cut to 120x40): this module's ``Frame`` ~0.4 ms a frame, a
rich ``Table`` with the same rows printed to a reused ``Console`` ~60 ms (rich was
installed in a scratch environment for the comparison only; it is no dependency).
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

TASKS = 64
FLOOD = 2_000_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def child(mode: str, tmp: Path) -> None:
    from tests import fake_agent  # noqa: PLC0415

    from claude_runner.pipeline import clirun  # noqa: PLC0415
    from claude_runner.pipeline.executor import run_pipeline  # noqa: PLC0415
    from claude_runner.plan.models import Plan, resolve  # noqa: PLC0415
    from claude_runner.progress import StreamActivity, make_progress  # noqa: PLC0415
    from claude_runner.runtime import Runtime  # noqa: PLC0415

    observer = make_progress(mode, sys.stderr, os.environ)
    listeners: tuple[Callable[[dict[str, Any]], None], ...] = ()
    if observer is not None:
        listeners = (observer.event,)  # the executor's listeners: every masked event
        init, write_log, on_message = (
            clirun.CliRun.__init__,
            clirun.CliRun._write_log,
            clirun.CliRun._on_message,
        )
        runs: dict[int, tuple[str, str, StreamActivity]] = {}

        def observed_init(self: clirun.CliRun, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            stage_id, task_id = Path(kwargs["log"]).parts[-3:-1]  # tasks/<stage>/<task>/
            runs[id(self)] = (stage_id, task_id, StreamActivity())

        def observed_log(self: clirun.CliRun, data: bytes) -> None:
            write_log(self, data)
            stage_id, task_id, tracker = runs[id(self)]
            changed = tracker.feed(data)
            if changed is not None:
                observer.activity(stage_id, task_id, *changed)

        def observed_message(self: clirun.CliRun, message: dict[str, Any]) -> None:
            on_message(self, message)
            if message.get("type") == "result":
                stage_id, task_id, tracker = runs[id(self)]
                observer.activity(stage_id, task_id, *tracker.result(message))

        clirun.CliRun.__init__ = observed_init  # type: ignore[method-assign]
        clirun.CliRun._write_log = observed_log  # type: ignore[method-assign]
        clirun.CliRun._on_message = observed_message  # type: ignore[method-assign]

    workspace = tmp / "ws"
    workspace.mkdir()
    plan = {
        "version": "v1",
        "stages": [
            {
                "id": "wide",
                "mode": "parallel",
                "tasks": [
                    {"id": f"t{n:02d}", "prompt": f"flood {FLOOD}", "read_only": True}
                    for n in range(TASKS)
                ],
            }
        ],
    }
    env = {**os.environ, "PIPELINE_WORKSPACES_ROOT": str(tmp / "runs")}
    with open(os.devnull, "w") as devnull:
        code = run_pipeline(
            resolve(Plan.model_validate(plan)),
            Runtime.from_env(env, claude_bin=fake_agent.install(tmp)),
            workspace=workspace,
            plan_path=Path("plan.yml"),
            out=devnull,
            listeners=listeners,
        )
    if observer is not None:
        observer.close()
    own = resource.getrusage(resource.RUSAGE_SELF)
    agents = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "code": code,
        "cpu": own.ru_utime + own.ru_stime,
        "agents": agents.ru_utime + agents.ru_stime,
    }
    sys.stdout.write(json.dumps(report) + "\n")


def run_once(mode: str) -> dict[str, float]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    drained = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            drained.extend(data[-4096:])

    with tempfile.TemporaryDirectory(prefix="bench-progress-") as tmp:
        env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT / "src")}
        child_proc = subprocess.Popen(
            [sys.executable, __file__, "--child", mode, tmp],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        out, _ = child_proc.communicate(timeout=600)
        reader.join(timeout=10)
        os.close(master)
    if child_proc.returncode != 0:
        raise SystemExit(f"{mode} run failed ({child_proc.returncode}): {bytes(drained)[-2000:]!r}")
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"{mode} run: the pipeline failed")
    if mode == "live" and b"STAGE / TASK" not in drained:
        raise SystemExit("live run: no table was drawn")
    return result


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], Path(sys.argv[3]))
        return 0
    cpu: dict[str, list[float]] = {"live": [], "off": []}
    for n in range(ROUNDS):
        for mode in ("live", "off") if n % 2 == 0 else ("off", "live"):
            result = run_once(mode)
            cpu[mode].append(result["cpu"])
            print(f"# round {n} {mode}: runner cpu {result['cpu']:.3f}s, "
                  f"agents {result['agents']:.2f}s", file=sys.stderr)  # fmt: skip
    live, off = statistics.median(cpu["live"]), statistics.median(cpu["off"])
    print(f"progress: cpu_live/cpu_off={live / off:.3f} (cpu_s: live={live:.3f} off={off:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
