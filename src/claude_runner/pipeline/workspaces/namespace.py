"""Mounts for an unprivileged runner: one user and mount namespace per run.

A helper process (``mounts.py`` run as a script) unshares a user and a mount namespace,
maps the runner's uid to 0 there, and mounts and unmounts on request. Every process that
must see a task's workspace (the CLI, a verify command, the git of preservation) is
started through ``command``: ``nsenter`` joins the helper's namespaces and changes into
the workspace there, then ``unshare`` makes a nested user namespace that maps the runner's
uid back to itself, so the process runs with the runner's uid, no capabilities, and
cannot undo a mount (a read-only workspace stays read-only).

Measured on Linux 6.18 (Debian 12 userland), what changes for an agent in there:
- git, the Bash tool and the CLI work; the runner's own files show its uid and gid;
  files of other users show as 65534 (nobody) and cannot be chowned;
- renaming a directory that came from the workspace fails with EXDEV (the kernel allows
  no ``redirect_dir`` without privileges): ``mv`` copies instead, but ``git mv <dir>``
  and any program calling rename(2) on such a directory fail;
- ``sudo`` cannot work (setuid is ignored where uid 0 is not mapped: "sudo must be owned
  by uid 0 and have the setuid bit set");
- a daemon outside the namespace (dockerd: ``docker run -v $PWD:...``) sees the empty
  mount point, not the workspace.
So the namespace is used only when asked for (``PIPELINE_WORKSPACE_METHOD=overlay``),
and even then not when the user may run ``sudo`` or reach a Docker daemon
(``blockers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from claude_runner import proc
from claude_runner.errors import WorkspaceError
from claude_runner.pipeline.workspaces import mounts

_REPLY_TIMEOUT = 30.0
_EXIT_TIMEOUT = 5.0


def blockers(env: Mapping[str, str]) -> list[str]:
    """Why running tasks inside a user namespace would break what they do (empty: it
    would not, as far as can be told without running them)."""
    reasons: list[str] = []
    path = env.get("PATH", os.defpath)
    missing = [tool for tool in ("nsenter", "unshare") if shutil.which(tool, path=path) is None]
    if missing:
        reasons.append(f"{' and '.join(missing)} not found")
    if env.get("DOCKER_HOST"):
        reasons.append("DOCKER_HOST is set: a Docker daemon cannot see mounts made inside it")
    else:
        runtime = env.get("XDG_RUNTIME_DIR")
        for sock in ("/var/run/docker.sock", *([f"{runtime}/docker.sock"] if runtime else [])):
            if os.path.exists(sock) and os.access(sock, os.R_OK | os.W_OK):
                reasons.append(
                    f"the Docker daemon at {sock} is reachable and cannot see mounts made inside it"
                )
    sudo = shutil.which("sudo", path=path)
    if sudo is not None:
        try:
            done = proc.run([sudo, "-n", "-l"], env=dict(env), timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0:
            reasons.append("the user may run sudo, which cannot work inside it")
    return reasons


class Holder:
    """The namespace helper of one run (see the module docstring). Thread-safe."""

    def __init__(self, child: subprocess.Popen[bytes], pid: int, tools: tuple[str, str]) -> None:
        self._child = child
        self.pid = pid
        self._nsenter, self._unshare = tools
        self._lock = threading.Lock()
        self._buffer = b""

    @classmethod
    def start(cls, python: str, env: Mapping[str, str]) -> Holder:
        """Start the helper; WorkspaceError when the kernel refuses the namespace."""
        path = env.get("PATH", os.defpath)
        nsenter, unshare = shutil.which("nsenter", path=path), shutil.which("unshare", path=path)
        if nsenter is None or unshare is None:
            raise WorkspaceError("nsenter or unshare not found")
        child = proc.spawn(
            [python, "-I", "-S", mounts.__file__],
            env={"PATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # The helper unshares without forking: its pid is the namespace's.
        holder = cls(child, child.pid, (nsenter, unshare))
        try:
            reply = holder._read_reply()
        except BaseException:
            holder.close()
            raise
        if not reply.get("ok"):
            holder.close()
            raise WorkspaceError(f"refused: {reply.get('error')}")
        return holder

    def _read_reply(self) -> dict[str, object]:
        assert self._child.stdout is not None  # noqa: S101
        fd = self._child.stdout.fileno()
        deadline = time.monotonic() + _REPLY_TIMEOUT
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise WorkspaceError("the namespace helper did not answer")
            chunk = os.read(fd, 65536)
            if not chunk:
                text = self._buffer.decode("utf-8", "replace").strip()
                raise WorkspaceError(f"the namespace helper exited: {text[-300:] or 'no output'}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise WorkspaceError(f"the namespace helper said: {line.decode('utf-8', 'replace')}")
        return reply

    def request(self, **request: object) -> None:
        """Have the helper mount or unmount (see ``mounts.py``); OSError on refusal."""
        assert self._child.stdin is not None  # noqa: S101
        with self._lock:
            try:
                self._child.stdin.write(json.dumps(request).encode() + b"\n")
                self._child.stdin.flush()
            except OSError as exc:
                raise WorkspaceError(f"the namespace helper is gone: {exc.strerror}") from None
            reply = self._read_reply()
        if not reply.get("ok"):
            code = reply.get("errno")
            raise OSError(code if isinstance(code, int) else 0, str(reply.get("error")))

    xattrs = mounts.USER

    def overlay(
        self, target: Path, lowers: Sequence[Path], upper: Path | None, work: Path | None
    ) -> None:
        self.request(
            op="overlay",
            target=str(target),
            lowers=[str(p) for p in lowers],
            upper=None if upper is None else str(upper),
            work=None if work is None else str(work),
        )

    def unmount(self, target: Path, *, detach: bool = False) -> None:
        self.request(op="unmount", target=str(target), detach=detach)

    def command(self, argv: Sequence[str], cwd: Path) -> list[str]:
        """``argv`` run inside the namespace, in ``cwd`` as seen there, with the runner's
        uid and gid and no capabilities."""
        return [
            self._nsenter,
            f"--target={self.pid}",
            "--user",
            "--mount",
            "--preserve-credentials",
            f"--wdns={cwd}",
            "--",
            self._unshare,
            f"--map-user={os.getuid()}",
            f"--map-group={os.getgid()}",
            "--",
            *argv,
        ]

    def close(self) -> None:
        """End the helper (the namespace goes when its last process has exited)."""
        child = self._child
        if child.stdin is not None and not child.stdin.closed:
            with contextlib.suppress(OSError):
                child.stdin.close()
        try:
            child.wait(timeout=_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.stop(child, grace=1.0)
        if child.stdout is not None:
            child.stdout.close()
