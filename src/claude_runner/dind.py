"""Docker-in-Docker: start ``dockerd`` inside the runner's container, wait until it
answers, and stop it with nothing left behind.

Start (``DockerDaemon.start``):
  1. ``check_preconditions`` refuses, before anything starts (exit 2), a socket mounted
     from the host (or one a daemon answers on), a missing ``dockerd``, and a non-root
     runner without passwordless sudo for it. A stale socket left by a killed earlier
     run of the same container is neither, and dockerd replaces it.
  2. ``dockerd --storage-driver D`` runs directly when root, else through ``sudo -n``;
     its stdout/stderr are appended to ``DIND_LOG_FILE`` (default ``/tmp/dockerd.log``,
     writable whoever the runner runs as). A non-root runner needs the docker group
     (the socket's) and NOPASSWD sudoers rules for exactly these command lines (the
     image's ``docker/sudoers-dind``): ``dockerd --storage-driver * --host
     unix:///var/run/docker.sock --pidfile /var/run/docker.pid``, ``kill -KILL *``,
     ``rm -f /var/run/docker.pid``, ``rm -f /var/run/docker.pid /var/run/docker.sock``
     and ``rm -f /var/run/docker/containerd/containerd.pid``.
  3. Ready means ``GET /_ping`` over ``/var/run/docker.sock`` answers ``OK``, polled until
     ``DIND_STARTUP_TIMEOUT_SEC``. If the daemon exits or is not ready in time, it is
     stopped, its pid file and socket are removed and ``vfs`` is tried (overlay2 cannot
     work on an overlay root, the usual case in a container). If that fails too, a
     ``DaemonError`` quotes the last lines of the log and names ``--privileged``. A
     signal meanwhile (``cancel``) ends the wait; the caller then stops the daemon.

Stop (``DockerDaemon.stop``): SIGTERM (dockerd stops its containers), wait ``STOP_GRACE``,
then SIGKILL whatever is left of dockerd, containerd, the shims and their containers
(shims daemonize out of dockerd's tree, so they are found by their containerd address),
then remove the pid files and socket. The caller stops the agents first and keeps its
own exit code.

Interactive mode: with DinD on, the runner does not ``exec`` the CLI; it stays its parent
in the same terminal session and stops the daemon when the CLI exits
(``modes.run_interactive``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from claude_runner import proc
from claude_runner.config import Settings
from claude_runner.errors import DaemonError, UsageError

SOCKET = Path("/var/run/docker.sock")
PIDFILE = Path("/var/run/docker.pid")
EXEC_ROOT = Path("/var/run/docker")
# dockerd reuses a containerd whose pid file names a live (or zombie) pid: never let a
# killed attempt's file mislead the next one.
CONTAINERD_PIDFILE = EXEC_ROOT / "containerd" / "containerd.pid"
FALLBACK_DRIVER = "vfs"
STOP_GRACE = 20.0  # dockerd gives containers up to 15 s (its shutdown-timeout) to stop
POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 15
# The daemon needs no secrets; it only gets what it uses (proxies for pulls).
_DAEMON_ENV_KEYS = ("PATH", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
                    "https_proxy", "no_proxy")  # fmt: skip
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin")
_DAEMON_NAMES = frozenset({"containerd", "containerd-shim-runc-v2", "containerd-shim"})
_READY = "ready"
_CANCELLED = "cancelled"


def check_preconditions(settings: Settings, *, env: Mapping[str, str] | None = None) -> None:
    """Everything that can be refused before the workspace is touched (exit 2)."""
    env = os.environ if env is None else env
    # A socket left by a killed earlier run of this container (docker restart keeps
    # /var/run) is neither mounted nor answering: dockerd replaces it.
    if os.path.lexists(SOCKET) and (_is_mount_point(SOCKET) or _answers(SOCKET)):
        raise UsageError(
            f"ENABLE_DIND is on but {SOCKET} already exists (mounted from the host?): "
            "mounting an external Docker socket together with DinD is not allowed; "
            "drop the socket mount or set ENABLE_DIND=0"
        )
    dockerd = _dockerd_path(env)
    if os.geteuid() != 0:
        _check_sudo(build_argv(dockerd, settings.dind_storage_driver, as_root=True), env)


def _is_mount_point(path: Path) -> bool:
    """Whether ``path`` (a file: ismount() only knows directories) is a mount point."""
    target = os.path.realpath(path)
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return True  # cannot tell: refuse rather than start a second daemon
    for line in mountinfo.splitlines():
        fields = line.split()
        # Field 5 is the mount point, with space, tab, newline, backslash octal-escaped.
        if len(fields) > 4 and _unescape(fields[4]) == target:
            return True
    return False


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _answers(path: Path) -> bool:
    try:
        return ping(path, timeout=2.0)
    except PermissionError:
        return True  # something guarded is there; do not start over it


def _dockerd_path(env: Mapping[str, str]) -> str:
    search = os.pathsep.join([env.get("PATH", ""), *_SBIN_DIRS])
    found = shutil.which("dockerd", path=search)
    if found is None:
        raise DaemonError(
            "ENABLE_DIND is on but dockerd is not installed in this image; "
            "use an image with Docker's engine or set ENABLE_DIND=0"
        )
    return found


def _check_sudo(argv: list[str], env: Mapping[str, str]) -> None:
    if shutil.which("sudo", path=env.get("PATH")) is None:
        raise DaemonError(
            f"ENABLE_DIND needs root to start dockerd, the runner runs as uid {os.geteuid()} "
            "and sudo is not installed; run the container as root or install sudo with a "
            "NOPASSWD rule for dockerd"
        )
    # -l with the exact command line: may it run (a sudoers rule may pin the
    # arguments), without running anything.
    done = proc.run(["sudo", "-n", "-l", *argv], env=env, timeout=30)
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise DaemonError(
            f"ENABLE_DIND needs root to start dockerd, and `sudo -n` refuses for uid "
            f"{os.geteuid()} ({why[0]}); add a NOPASSWD sudoers rule or run as root"
        )


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the daemon's unix socket (the Docker API's transport)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def ping(path: Path = SOCKET, *, timeout: float = 2.0) -> bool:
    """True when the Docker API on ``path`` answers ``GET /_ping`` with ``OK``.
    A socket this process may not open raises PermissionError (waiting cannot help)."""
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", "/_ping")
        response = conn.getresponse()
        return response.status == 200 and response.read() == b"OK"
    except PermissionError:
        raise
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def build_argv(dockerd: str, driver: str, *, as_root: bool) -> list[str]:
    """The daemon's command line; socket and pid file are spelled out because the
    runner polls and cleans exactly those."""
    argv = [
        dockerd,
        "--storage-driver",
        driver,
        "--host",
        f"unix://{SOCKET}",
        "--pidfile",
        str(PIDFILE),
    ]
    return argv if as_root else ["sudo", "-n", *argv]


class DockerDaemon:
    """A running inner dockerd. Use ``start``; ``stop`` (or leaving the ``with``) ends it."""

    env: dict[str, str]

    def __init__(
        self, child: subprocess.Popen[bytes], *, driver: str, log_file: Path, as_root: bool
    ) -> None:
        self._child = child
        # Taken now, while the child surely exists: stop() tells our containerd from
        # another engine's by it.
        self._started = _start_ticks(child.pid)
        self.driver = driver
        self.log_file = log_file
        self._as_root = as_root
        self.env = {"DOCKER_HOST": f"unix://{SOCKET}"}

    @classmethod
    def start(
        cls,
        settings: Settings,
        *,
        notice: Callable[[str], None],
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
    ) -> DockerDaemon:
        """Start dockerd with the configured driver, then ``vfs``; raise DaemonError when
        neither answers. When ``cancel`` is set meanwhile, return at once (not ready):
        the caller stops it with the rest of the run."""
        env = os.environ if env is None else env
        check_preconditions(settings, env=env)
        dockerd = _dockerd_path(env)
        as_root = os.geteuid() == 0
        drivers = [settings.dind_storage_driver]
        if settings.dind_storage_driver != FALLBACK_DRIVER:
            drivers.append(FALLBACK_DRIVER)
        failures: list[str] = []
        for driver in drivers:
            daemon = cls._spawn(dockerd, driver, settings.dind_log_file, env, as_root=as_root)
            try:
                failure = daemon._wait_ready(settings.dind_startup_timeout, cancel)
            except BaseException:
                daemon.stop()
                raise
            if failure == _READY:
                notice(f"dockerd ready (storage driver {driver}, log {settings.dind_log_file})")
                return daemon
            if failure == _CANCELLED:  # the caller stops it with the rest of the run
                return daemon
            daemon.stop()
            failures.append(f"{driver}: {failure}")
            if driver != drivers[-1]:
                notice(f"dockerd with storage driver {driver} {failure}; retrying with vfs")
        raise DaemonError(
            f"Docker-in-Docker did not start ({'; '.join(failures)}). "
            f"Last lines of {settings.dind_log_file}:\n"
            + _tail(settings.dind_log_file, LOG_TAIL_LINES)
            + "\nMost likely the container is not running with --privileged "
            "(docker run --privileged ...), which dockerd needs."
        )

    @classmethod
    def _spawn(
        cls, dockerd: str, driver: str, log_file: Path, env: Mapping[str, str], *, as_root: bool
    ) -> DockerDaemon:
        _remove_stale_pidfile(as_root=as_root)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = build_argv(dockerd, driver, as_root=as_root)
        with log_file.open("ab") as log:
            log.write(f"--- claude-runner: {' '.join(argv)}\n".encode())
            log.flush()
            daemon_env = {k: env[k] for k in _DAEMON_ENV_KEYS if k in env}
            child = proc.spawn(argv, env=daemon_env, stdout=log.fileno(), stderr=log.fileno())
        return cls(child, driver=driver, log_file=log_file, as_root=as_root)

    def _wait_ready(self, timeout: float, cancel: threading.Event | None) -> str:
        """``_READY``, ``_CANCELLED``, or why it is not ready."""
        deadline = time.monotonic() + timeout
        while True:
            code = self._child.poll()
            if code is not None:
                return f"exited with code {code} during start-up"
            # A daemon still initialising accepts connections but does not answer yet.
            left = deadline - time.monotonic()
            try:
                if ping(SOCKET, timeout=min(2.0, max(left, POLL_INTERVAL))):
                    return _READY
            except PermissionError as exc:
                raise DaemonError(
                    f"dockerd started but uid {os.geteuid()} may not open {SOCKET} ({exc}); "
                    "add the runner's user to the docker group"
                ) from exc
            if cancel is not None and cancel.is_set():
                return _CANCELLED
            if time.monotonic() >= deadline:
                return f"did not answer _ping within {timeout:g}s"
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_GRACE, SIGKILL what is left; remove pid file and
        socket. Idempotent."""
        child = self._child
        # Taken before SIGTERM: the tree and the pid file are gone once dockerd exits,
        # while what it failed to stop may live on, reparented.
        before = [*proc.descendants(child.pid), *_pidfile_pid()]
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)  # sudo relays it to dockerd
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=STOP_GRACE)
        leftovers = {p for p in before if _running(p)}
        leftovers.update(proc.descendants(child.pid))
        # and the containers under an orphaned shim
        for pid in _daemon_processes(started_after=self._started):
            leftovers.update([pid, *proc.descendants(pid)])
        if child.poll() is None:
            leftovers.add(child.pid)
        if leftovers:
            self._kill(sorted(leftovers))
        child.wait()
        # Two fixed command lines, so a narrow sudoers rule can allow exactly them.
        self._as_root_run(["rm", "-f", str(PIDFILE), str(SOCKET)])
        self._as_root_run(["rm", "-f", str(CONTAINERD_PIDFILE)])

    def _kill(self, pids: list[int]) -> None:
        if self._as_root:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            self._as_root_run(["kill", "-KILL", *map(str, pids)])
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_running(p) for p in pids):
            # Reap orphans that became ours (the runner may be a subreaper); the
            # daemon's own process is left to Popen.
            for pid in pids:
                if pid != self._child.pid:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=POLL_INTERVAL)

    def _as_root_run(self, argv: list[str]) -> None:
        proc.run(argv if self._as_root else ["sudo", "-n", *argv], timeout=30)

    def __enter__(self) -> DockerDaemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def _start_ticks(pid: int) -> int:
    """A process's start time in clock ticks since boot (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0
    # Field 22; the fields after the command name start at field 3.
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


def _daemon_processes(*, started_after: int) -> list[int]:
    """containerd and the shims of *this* daemon. Shims daemonize out of dockerd's tree;
    they name the containerd socket under the exec root. Processes in another mount
    namespace (a host's own engine, seen from a test namespace) are not ours. A non-root
    runner cannot read a root process's namespace: then only processes started after our
    dockerd count (a host engine's containerd is older), so a runner that shares a PID
    namespace with another engine never kills that engine's containerd."""
    own_ns = os.readlink("/proc/self/ns/mnt")
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0].decode(errors="replace")) not in _DAEMON_NAMES:
            continue
        if str(EXEC_ROOT).encode() not in b" ".join(argv):
            continue
        pid = int(entry.name)
        try:
            if os.readlink(f"{entry.path}/ns/mnt") != own_ns:
                continue
        except PermissionError:
            if _start_ticks(pid) < started_after:
                continue
        except OSError:
            continue
        found.append(pid)
    return found


def _pidfile_pid() -> list[int]:
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return []
    return [pid] if _running(pid) else []


def _remove_stale_pidfile(*, as_root: bool) -> None:
    """dockerd refuses to start over a pid file whose process is gone."""
    if not os.path.lexists(PIDFILE) or _pidfile_pid():
        return
    proc.run(
        ["rm", "-f", str(PIDFILE)] if as_root else ["sudo", "-n", "rm", "-f", str(PIDFILE)],
        timeout=30,
    )


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"  (cannot read the log: {exc})"
    return "\n".join(f"  {line}" for line in text.splitlines()[-lines:])
