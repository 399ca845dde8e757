"""Drives ``DockerDaemon`` inside a test namespace and prints what it saw as JSON.

Run as ``python -m tests.dind_driver`` with the runner's settings in the environment.
One JSON object on the last stdout line: the notices, the storage driver the daemon
reports over its API, whether it answered before and after ``stop()``, or the error.
"""

from __future__ import annotations

import json
import os
import sys

from claude_runner import dind
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
