"""Task-workspace scenarios in a process of their own, as another user.

Tests of the unprivileged paths start this (as root) with Debian's ``/usr/bin/python3``
from the public checkout (the runner's own interpreter may be unreadable to that user):
``python3 -m tests.workspaces_driver '<spec json>'``. The driver may first enter a user
namespace that allows no further ones (``no_nested_userns``: the kernel refusal of an
unprivileged runner's namespace, without touching the machine's settings), drops to
``uid``/``gid``, opens the run's ``Workspaces``, makes each task's workspace, runs its
commands through ``TaskWorkspace.command`` and prints one JSON line::

    {"methods": {...}, "tasks": [{"method", "read_only", "notes", "changed", "results":
     [{"rc", "out", "err"}]}]}

``ignore_blockers`` uses the namespace even where ``namespace.blockers`` would refuse it
(to show what breaks there). With ``hold`` it prints ``{"ready": true, "holder": <pid>}``
once the workspaces are made and then waits for the end of its input without releasing
anything (a runner killed mid-task).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from claude_runner.pipeline.workspaces import TaskWorkspace, Workspaces, namespace
from claude_runner.pipeline.workspaces.mounts import CLONE_NEWUSER


def _no_nested_user_namespaces() -> None:
    """Continue in a child that is in a user namespace (identity-mapped) whose limit of
    user namespaces is 0; the parent waits and exits with its status."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os._exit(90)
        os.write(ready_w, b"x")
        os.read(go_r, 1)  # the parent has written our maps
        with open("/proc/sys/user/max_user_namespaces", "w", encoding="ascii") as f:
            f.write("0")
        return
    os.read(ready_r, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w", encoding="ascii") as f:
            f.write("0 0 4294967295")
    os.write(go_w, b"x")
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status))


def _drop(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _run(ws: TaskWorkspace, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        ws.command(argv),
        cwd=ws.path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}


def main(spec: dict[str, Any]) -> None:
    if spec.get("no_nested_userns"):
        _no_nested_user_namespaces()
    if spec.get("uid") is not None:
        _drop(int(spec["uid"]), int(spec["gid"]))
    env = {str(k): str(v) for k, v in spec["env"].items()}
    if spec.get("ignore_blockers"):  # to measure what the rules keep out
        namespace.blockers = lambda env: []
    workspaces = Workspaces.open(
        Path(spec["run_dir"]), Path(spec["source"]), env, modes=set(spec["modes"])
    )
    made = [
        workspaces.make(t["mode"], Path(spec["source"]), Path(t["dest"])) for t in spec["tasks"]
    ]
    if spec.get("hold"):
        holder = getattr(workspaces._mounter, "pid", None)
        print(json.dumps({"ready": True, "holder": holder}), flush=True)
        sys.stdin.read()
        return
    report: dict[str, Any] = {"methods": dataclasses.asdict(workspaces.methods), "tasks": []}
    try:
        for task, ws in zip(spec["tasks"], made, strict=True):
            results = [_run(ws, argv, env) for argv in task.get("commands", [])]
            report["tasks"].append(
                {
                    "method": ws.method,
                    "read_only": ws.read_only,
                    "notes": ws.notes,
                    "changed": ws.changed_paths(),
                    "read_root": str(ws.read_root),
                    "upper": None if ws.upper is None else str(ws.upper),
                    "namespace": ws.namespace,
                    "results": results,
                }
            )
    finally:
        workspaces.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
