"""Run a real inner dockerd on a machine that already runs its own engine.

Each test gets a fresh network namespace (so the inner daemon's ``docker0`` bridge and
iptables chains cannot disturb the host's engine) and, per command, a fresh mount
namespace with a tmpfs on ``/run`` (the host's ``/var/run/docker.sock`` is hidden, and the
default paths are used as in the image) and on ``/var/lib/docker``. With
``data_root="overlay"``, ``/var/lib/docker`` is an overlayfs mount instead, where overlay2
cannot work: the situation inside a container, so the vfs fallback runs for real.

Leftover processes are found by mount namespace: anything still in it after the command
exited was left behind (there is no pid namespace to kill it for us).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from claude_runner import proc

_CLONE_NEWNET = 0x40000000

# Runs in the new mount namespace: private mounts, then the command; reports what is
# left in /run afterwards (pid file and socket must be gone).
_NS_SCRIPT = r"""
set -eu
mount -t tmpfs tmpfs /run
mkdir -p /var/lib/docker
if [ "$1" = overlay ]; then
    mkdir -p "$2" && mount -t tmpfs tmpfs "$2"
    mkdir -p "$2/lower" "$2/upper" "$2/work"
    mount -t overlay overlay -o "lowerdir=$2/lower,upperdir=$2/upper,workdir=$2/work" \
        /var/lib/docker
else
    mount -t tmpfs tmpfs /var/lib/docker
fi
shift 2
echo "NS mnt=$(readlink /proc/self/ns/mnt)"
set +e
"$@"
rc=$?
left=""
for f in /run/docker.pid /run/docker.sock; do [ ! -e "$f" ] || left="$left $f"; done
# A newline first: the command's output may end without one (a CLI stopped mid-line).
echo
echo "NS left=${left# }"
echo "NS rc=$rc"
exit $rc
"""


def require_engine() -> None:
    """Skip (with the reason) unless root with Debian's engine installed."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the inner dockerd and its namespaces need uid 0")
    for tool in ("dockerd", "unshare", "nsenter", "ip"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.skip(f"{tool} not installed: run scripts/install-docker-engine.sh")


class NetNamespace:
    """A network namespace held open by a sleeping process, loopback up."""

    def __init__(self) -> None:
        self.holder = proc.spawn(["unshare", "--net", "--", "sleep", "infinity"])
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == own:
            assert time.monotonic() < deadline, "unshare --net did not take effect in 10 s"
            time.sleep(0.01)
        self.path = f"/proc/{self.holder.pid}/ns/net"
        done = proc.run(["nsenter", f"--net={self.path}", "ip", "link", "set", "lo", "up"])
        assert done.returncode == 0, done.stderr

    def argv(
        self, command: list[str], *, data_root: Literal["tmpfs", "overlay"], scratch: Path
    ) -> list[str]:
        """``command`` in this network namespace and a fresh mount namespace."""
        return [
            "nsenter",
            f"--net={self.path}",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _NS_SCRIPT,
            "ns",
            data_root,
            str(scratch),
            *command,
        ]

    def close(self) -> None:
        proc.stop(self.holder, grace=1.0)


@contextlib.contextmanager
def net_namespace() -> Iterator[NetNamespace]:
    ns = NetNamespace()
    try:
        yield ns
    finally:
        ns.close()


def ns_report(stdout: str) -> dict[str, str]:
    """The ``NS key=value`` lines the namespace script printed."""
    report: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("NS "):
            key, _, value = line[3:].partition("=")
            report[key] = value
    return report


def processes_in(mnt_ns: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in the mount namespace ``mnt_ns``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"{entry.path}/ns/mnt") != mnt_ns:
                continue
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append((int(entry.name), cmd.strip()))
    return found


def wait_until_empty(mnt_ns: str, timeout: float = 10.0) -> list[tuple[int, str]]:
    """Poll until no process is left in ``mnt_ns``; return what is left at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := processes_in(mnt_ns)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def tiny_image_tar(dest: Path) -> Path:
    """A root filesystem holding only /true and /sleep and the libraries they load,
    taken from the host: enough for `docker import` + `docker run`, no registry."""
    binaries = [shutil.which("true") or "/bin/true", shutil.which("sleep") or "/bin/sleep"]
    files: set[str] = set()
    for binary in binaries:
        ldd = proc.run(["ldd", binary])
        for line in ldd.stdout.splitlines():
            for word in line.split():
                if word.startswith("/"):
                    files.add(word)
    with tarfile.open(dest, "w") as tar:
        for binary in binaries:
            tar.add(os.path.realpath(binary), arcname=os.path.basename(binary))
        for lib in sorted(files):
            tar.add(os.path.realpath(lib), arcname=lib.lstrip("/"))
    return dest


class LineReader:
    """Collects a child's stdout lines in a thread, so tests can wait for one."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self._stream = child.stdout
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
            time.sleep(0.02)
        raise AssertionError(f"no line starting with {prefix!r} within {timeout}s: {self.lines}")

    def text(self) -> str:
        self._thread.join(timeout=10)
        with self._lock:
            return "\n".join(self.lines)


class Forwarder:
    """Listens on 127.0.0.1:``port`` inside a network namespace and relays each
    connection to 127.0.0.1:``port`` here: the stand-in API, seen from the namespace.
    (setns() switches only the calling thread; a socket keeps the namespace it was
    made in.)"""

    def __init__(self, netns_path: str, port: int) -> None:
        self._port = port
        self._stop = threading.Event()
        libc = ctypes.CDLL(None, use_errno=True)
        target = os.open(netns_path, os.O_RDONLY)
        result: list[socket.socket] = []

        def bind_inside() -> None:
            assert libc.setns(target, _CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
            result.append(socket.create_server(("127.0.0.1", port)))

        # A throwaway thread enters the namespace, so no long-lived thread changes.
        binder = threading.Thread(target=bind_inside)
        binder.start()
        binder.join()
        os.close(target)
        assert result, "could not listen inside the network namespace"
        self._server = result[0]
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                inside, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(inside,), daemon=True).start()

    def _relay(self, inside: socket.socket) -> None:
        # A peer that resets (the CLI killed mid-request) just ends the relay.
        with contextlib.suppress(OSError):
            self._pump(inside)

    def _pump(self, inside: socket.socket) -> None:
        with inside, socket.create_connection(("127.0.0.1", self._port)) as outside:
            sel = selectors.DefaultSelector()
            sel.register(inside, selectors.EVENT_READ, outside)
            sel.register(outside, selectors.EVENT_READ, inside)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=5)
