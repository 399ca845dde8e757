"""Time to a ready Docker daemon: the runner's ``DockerDaemon.start`` versus dockerd
started by hand with the same driver, polling the same socket as fast as it can.

    sudo .venv/bin/python bench/dind_start.py [--rounds 5] [--driver overlay2]

Prints ``dind_start: runner/manual=X.XX`` (ratio of medians; goal <= 1.20) and the
medians. Needs root and Debian's engine. It re-executes itself in private mount and
network namespaces (tmpfs on /run), so a host engine is neither seen nor disturbed and
both sides use the default socket. Rounds alternate (runner manual, manual runner, ...); each
round gets a fresh tmpfs data root, stacked on the previous one and never deleted
between rounds; the daemon is stopped outside the timed part.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from claude_runner import dind, proc  # noqa: E402
from claude_runner.config import Settings  # noqa: E402

_MARKER = "CLAUDE_RUNNER_BENCH_IN_NS"
_LOG = Path("/tmp/dind-bench/dockerd.log")


def _reexec_in_namespaces() -> int:
    script = 'set -e; mount -t tmpfs tmpfs /run; mkdir -p /var/lib/docker; exec "$@"'
    argv = ["unshare", "--mount", "--net", "--propagation", "private", "--"]
    argv += ["sh", "-c", script, "sh", sys.executable, *sys.argv]
    child = proc.spawn(argv, env={**os.environ, _MARKER: "1"}, stdin=None)
    return child.wait()


def _fresh_data_root() -> None:
    done = proc.run(["mount", "-t", "tmpfs", "tmpfs", "/var/lib/docker"])
    if done.returncode != 0:
        raise SystemExit(f"cannot mount a tmpfs data root: {done.stderr.strip()}")


def _runner(settings: Settings) -> float:
    start = time.perf_counter()
    daemon = dind.DockerDaemon.start(settings, notice=lambda _m: None)
    elapsed = time.perf_counter() - start
    daemon.stop()
    return elapsed


def _manual(driver: str) -> float:
    argv = dind.build_argv("/usr/sbin/dockerd", driver, as_root=True)
    with _LOG.open("ab") as log:
        start = time.perf_counter()
        child = proc.spawn(argv, stdout=log.fileno(), stderr=log.fileno())
        while not dind.ping(dind.SOCKET):
            if child.poll() is not None:
                raise SystemExit(f"dockerd exited with {child.returncode}; see {_LOG}")
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.stop(child, grace=1.0, first_signal=signal.SIGKILL)
    for leftover in (dind.PIDFILE, dind.SOCKET):
        leftover.unlink(missing_ok=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--driver", default="overlay2")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("dind_start: needs root (dockerd, namespaces)", file=sys.stderr)
        return 2
    if os.environ.get(_MARKER) != "1":
        return _reexec_in_namespaces()

    _LOG.parent.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env({"DIND_STORAGE_DRIVER": args.driver, "DIND_LOG_FILE": str(_LOG)})
    runner: list[float] = []
    manual: list[float] = []
    for i in range(args.rounds):
        # A B, B A, ...: neither side always runs right after the other's shutdown.
        for side in ("runner", "manual") if i % 2 == 0 else ("manual", "runner"):
            _fresh_data_root()
            if side == "runner":
                runner.append(_runner(settings))
            else:
                manual.append(_manual(args.driver))
    r, m = statistics.median(runner), statistics.median(manual)
    print(f"runner  median {r:.3f}s  {' '.join(f'{x:.3f}' for x in runner)}")
    print(f"manual  median {m:.3f}s  {' '.join(f'{x:.3f}' for x in manual)}")
    print(f"dind_start: runner/manual={r / m:.2f}")
    # The data roots were tmpfs mounts of this namespace; only the log is on disk.
    _LOG.unlink(missing_ok=True)
    _LOG.parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
