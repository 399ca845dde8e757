"""Drives ``DockerDaemon`` inside a test namespace and prints what it saw as JSON.

Run as ``python -m tests.dind_driver`` with the runner's settings in the environment.
One JSON object on the last stdout line: the notices, the storage driver the daemon
reports over its API, whether it answered before and after ``stop()``, or the error.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from claude_runner import dind, proc
from claude_runner.config import Settings
from claude_runner.dind import SOCKET, DockerDaemon, _UnixHTTPConnection, ping
from claude_runner.errors import RunnerError


def _api_driver() -> str:
    conn = _UnixHTTPConnection(SOCKET, 10.0)
    try:
        conn.request("GET", "/info")
        return str(json.loads(conn.getresponse().read())["Driver"])
    finally:
        conn.close()


def _crash_with_container(image_tar: str) -> None:
    """Run a container, then SIGKILL dockerd: its shim and container are orphaned."""
    docker = ["/usr/bin/docker", "--host", f"unix://{SOCKET}"]
    imported = proc.run([*docker, "import", image_tar, "tiny:1"], timeout=120)
    assert imported.returncode == 0, imported.stderr
    started = proc.run(
        [*docker, "run", "-d", "tiny:1", "/sleep", os.environ["DIND_TEST_SLEEP"]], timeout=120
    )
    assert started.returncode == 0, started.stderr
    os.kill(int(dind.PIDFILE.read_text()), signal.SIGKILL)


def main() -> int:
    if "DIND_TEST_STOP_GRACE" in os.environ:
        dind.STOP_GRACE = float(os.environ["DIND_TEST_STOP_GRACE"])
    notices: list[str] = []
    out: dict[str, object] = {"notices": notices}
    try:
        daemon = DockerDaemon.start(Settings.from_env(), notice=notices.append)
    except RunnerError as exc:
        out.update(error=str(exc), error_type=type(exc).__name__)
        print(json.dumps(out))
        return 2
    if "--crash-with-container" in sys.argv:
        _crash_with_container(sys.argv[-1])
        daemon.stop()
        print(json.dumps(out))
        return 0
    with daemon:
        out.update(
            chosen=daemon.driver,
            api_driver=_api_driver(),
            ping_ready=ping(SOCKET),
            env=daemon.env,
        )
    out["ping_after_stop"] = ping(SOCKET)
    daemon.stop()  # idempotent
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
