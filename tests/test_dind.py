"""Docker-in-Docker against a real dockerd (marked docker + root), plus the pure parts.

The daemon under test runs in namespaces of its own (see ``tests/dind_helpers.py``), so
the host's engine is neither seen nor disturbed and the runner uses its default paths.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import UnixStreamServer

import pytest

from claude_runner import dind, proc
from tests import fakeapi
from tests.conftest import DUMMY_API_KEY, REPO, PublicCheckout
from tests.dind_helpers import (
    Forwarder,
    LineReader,
    NetNamespace,
    net_namespace,
    ns_report,
    processes_in,
    require_engine,
    tiny_image_tar,
    wait_until_empty,
)
from tests.fakeapi import FakeMessagesAPI, Hang, Text, ToolUse

RUNNER = [sys.executable, "-m", "claude_runner"]
DRIVER = [sys.executable, "-m", "tests.dind_driver"]


# --- pure parts --------------------------------------------------------------------


def test_argv_as_root_and_through_sudo() -> None:
    root = dind.build_argv("/usr/sbin/dockerd", "vfs", as_root=True)
    assert root == [
        "/usr/sbin/dockerd",
        "--storage-driver",
        "vfs",
        "--host",
        "unix:///var/run/docker.sock",
        "--pidfile",
        "/var/run/docker.pid",
    ]
    assert dind.build_argv("/usr/sbin/dockerd", "vfs", as_root=False) == ["sudo", "-n", *root]


class _PingHandler(BaseHTTPRequestHandler):
    answer = b"OK"

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/_ping" else 404)
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixHTTPServer(UnixStreamServer):
    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock, _ = super().get_request()
        return sock, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)


@pytest.fixture
def ping_server(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "api.sock"
    server = _UnixHTTPServer(str(path), _PingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()
    thread.join()


def test_ping_needs_ok_from_the_socket(
    ping_server: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert dind.ping(ping_server) is True
    monkeypatch.setattr(_PingHandler, "answer", b"starting")
    assert dind.ping(ping_server) is False
    assert dind.ping(tmp_path / "absent.sock") is False


# --- real dockerd ------------------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[NetNamespace]:
    require_engine()
    with net_namespace() as ns:
        yield ns


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DIND_LOG_FILE=str(tmp_path / "dockerd.log"), ENABLE_DIND="1")
    env.update(extra)
    return env


def _run_in_ns(
    netns: NetNamespace,
    command: list[str],
    env: dict[str, str],
    tmp_path: Path,
    *,
    data_root: str = "tmpfs",
    timeout: float = 120,
    cwd: Path = REPO,
) -> tuple[proc.Completed, dict[str, str]]:
    argv = netns.argv(command, data_root=data_root, scratch=tmp_path / "scratch")  # type: ignore[arg-type]
    done = proc.run(argv, cwd=cwd, env=env, timeout=timeout)
    report = ns_report(done.stdout)
    assert "mnt" in report, done.stdout + done.stderr
    left = wait_until_empty(report["mnt"])
    assert left == [], f"processes left behind: {left}"
    assert report.get("left") == "", f"left in /run after the run: {report.get('left')}"
    return done, report


def _driver_result(done: proc.Completed) -> dict[str, object]:
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    result: dict[str, object] = json.loads(lines[-1])
    return result


@pytest.mark.docker
@pytest.mark.root
def test_start_ready_then_stop(netns: NetNamespace, tmp_path: Path) -> None:
    done, _ = _run_in_ns(netns, DRIVER, _env(tmp_path), tmp_path)
    result = _driver_result(done)
    assert done.returncode == 0, result
    assert result["chosen"] == result["api_driver"] == "overlay2"
    assert result["ping_ready"] is True
    assert result["ping_after_stop"] is False
    assert result["env"] == {"DOCKER_HOST": "unix:///var/run/docker.sock"}
    assert result["notices"] == [
        f"dockerd ready (storage driver overlay2, log {tmp_path / 'dockerd.log'})"
    ]
    log = (tmp_path / "dockerd.log").read_text()
    assert "--storage-driver overlay2" in log
    # The daemon got no secrets from the runner's environment.
    assert DUMMY_API_KEY not in log


@pytest.mark.docker
@pytest.mark.root
def test_overlay2_falls_back_to_vfs_on_an_overlay_data_root(
    netns: NetNamespace, tmp_path: Path
) -> None:
    env = _env(tmp_path, ANTHROPIC_API_KEY=DUMMY_API_KEY)
    done, _ = _run_in_ns(netns, DRIVER, env, tmp_path, data_root="overlay")
    result = _driver_result(done)
    assert done.returncode == 0, result
    assert result["chosen"] == result["api_driver"] == "vfs"
    notices = result["notices"]
    assert isinstance(notices, list)
    assert notices[0].startswith("dockerd with storage driver overlay2 exited with code")
    assert notices[0].endswith("retrying with vfs")
    log = (tmp_path / "dockerd.log").read_text()
    assert log.index("--storage-driver overlay2") < log.index("--storage-driver vfs")
    assert DUMMY_API_KEY not in log


def _hanging_dockerd(tmp_path: Path, *, ignore_term: bool = True) -> Path:
    """Fault injection: a `dockerd` that never answers (and ignores SIGTERM)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dockerd"
    fake.write_text(
        '#!/bin/sh\necho "fake dockerd $*"\necho $$ >> "$(dirname "$0")/pids"\n'
        + ("trap '' TERM\n" if ignore_term else "")
        + "while :; do sleep 1; done\n"
    )
    fake.chmod(0o755)
    return bin_dir


@pytest.mark.docker
@pytest.mark.root
def test_readiness_timeout_on_both_drivers_is_one_clear_error(
    netns: NetNamespace, tmp_path: Path
) -> None:
    bin_dir = _hanging_dockerd(tmp_path)
    env = _env(
        tmp_path,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        DIND_STARTUP_TIMEOUT_SEC="1",
        DIND_TEST_STOP_GRACE="1",  # the fake ignores SIGTERM: reach SIGKILL sooner
    )
    done, _ = _run_in_ns(netns, DRIVER, env, tmp_path)
    result = _driver_result(done)
    assert done.returncode == 2
    assert result["error_type"] == "DaemonError"
    error = str(result["error"])
    assert error.startswith(
        "Docker-in-Docker did not start (overlay2: did not answer _ping within 1s; "
        "vfs: did not answer _ping within 1s)."
    )
    assert "fake dockerd --storage-driver vfs" in error  # the log's last lines are quoted
    assert error.endswith(
        "Most likely the container is not running with --privileged "
        "(docker run --privileged ...), which dockerd needs."
    )
    assert result["notices"] == [
        "dockerd with storage driver overlay2 did not answer _ping within 1s; retrying with vfs"
    ]
    pids = [int(p) for p in (bin_dir / "pids").read_text().split()]
    assert len(pids) == 2  # both attempts ran, and _run_in_ns found neither left


@pytest.mark.docker
@pytest.mark.root
def test_real_daemon_not_ready_in_time_is_stopped_and_cleaned(
    netns: NetNamespace, tmp_path: Path
) -> None:
    # A real dockerd whose containerd never comes up (fault injection: a `containerd`
    # that only sleeps) listens on its socket but never answers _ping. Both attempts
    # time out; _run_in_ns checks that neither daemon, nor its containerd, nor the pid
    # file or socket survives.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "containerd"
    fake.write_text('#!/bin/sh\necho "fake containerd $*"\nexec sleep 600\n')
    fake.chmod(0o755)
    env = _env(tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}", DIND_STARTUP_TIMEOUT_SEC="2")
    done, _ = _run_in_ns(netns, DRIVER, env, tmp_path)
    result = _driver_result(done)
    assert done.returncode == 2, result
    assert str(result["error"]).startswith(
        "Docker-in-Docker did not start (overlay2: did not answer _ping within 2s; "
        "vfs: did not answer _ping within 2s)."
    )
    log = (tmp_path / "dockerd.log").read_text()
    assert log.count("fake containerd") == 2  # the real dockerd started it, twice
    assert log.index("--storage-driver overlay2") < log.index("--storage-driver vfs")


@pytest.mark.docker
@pytest.mark.root
def test_stop_after_dockerd_died_kills_its_orphaned_shim_and_container(
    netns: NetNamespace, tmp_path: Path
) -> None:
    # dockerd SIGKILLed with a container running: containerd, the shim and the
    # container's process live on without it; stop() must still end them all.
    image = tiny_image_tar(tmp_path / "tiny.tar")
    marker = f"{os.getpid() % 1000 + 5000}.{time.time_ns() % 1000:03d}"  # unique argv
    env = _env(tmp_path, DIND_TEST_SLEEP=marker)
    command = [*DRIVER, "--crash-with-container", str(image)]
    done, _ = _run_in_ns(netns, command, env, tmp_path)
    result = _driver_result(done)
    assert done.returncode == 0, (result, done.stderr)
    # The container's process has a mount namespace of its own: look for it by argv.
    assert _sleepers(marker) == []


def _sleepers(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"/sleep", marker.encode()]:
                found.append(int(entry.name))
    return found


# --- not root: through sudo -n -----------------------------------------------------

NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged runner may write (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="dind-nonroot-"))
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path)


def _as_nobody(command: list[str], *, sudoers: Path | None) -> list[str]:
    """``command`` as uid nobody with the docker group, after (optionally) installing
    the ``sudoers`` file, visible only in this mount namespace."""
    setup = "set -e\n"
    if sudoers is not None:
        setup += (
            "mount -t tmpfs -o mode=0755 tmpfs /etc/sudoers.d\n"
            f"install -m 0440 {sudoers} /etc/sudoers.d/dind-test\n"
        )
    docker_gid = grp.getgrnam("docker").gr_gid
    setup += f'exec setpriv --reuid {NOBODY} --regid {docker_gid} --clear-groups "$@"\n'
    return ["sh", "-c", setup, "sh", *command]


def _nobody_env(shared: Path, public: PublicCheckout, **extra: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(shared),
        "PYTHONPATH": f"{public.root / 'src'}:{public.root}",
        "ENABLE_DIND": "1",
        "DIND_LOG_FILE": str(shared / "dockerd.log"),
    }
    env.update(extra)
    return env


def _run_nobody_in_ns(
    netns: NetNamespace,
    command: list[str],
    shared: Path,
    public: PublicCheckout,
    tmp_path: Path,
) -> proc.Completed:
    """Run an ``_as_nobody`` command in the test namespace, from the public checkout."""
    done, _ = _run_in_ns(netns, command, _nobody_env(shared, public), tmp_path, cwd=public.root)
    return done


# The runner's own interpreter may live where nobody cannot read; the daemon module
# needs only the standard library, so Debian's python3 runs the driver.
NOBODY_DRIVER = ["/usr/bin/python3", "-m", "tests.dind_driver"]


def _require_sudo() -> None:
    if shutil.which("sudo") is None or not Path("/usr/bin/python3").exists():
        pytest.skip("sudo or /usr/bin/python3 missing: run scripts/install-docker-engine.sh")


@pytest.mark.docker
@pytest.mark.root
def test_non_root_starts_dockerd_through_sudo(
    netns: NetNamespace, tmp_path: Path, shared_dir: Path, public_checkout: PublicCheckout
) -> None:
    _require_sudo()
    # The image's narrow rules, for nobody instead of claude: they must allow exactly
    # what the daemon module runs.
    image_rules = (REPO / "docker" / "sudoers-dind").read_text()
    rules = shared_dir / "sudoers"
    rules.write_text(image_rules.replace("\nclaude ALL=(root)", "\nnobody ALL=(root)"))
    assert "\nnobody ALL=(root)" in rules.read_text()
    command = _as_nobody(NOBODY_DRIVER, sudoers=rules)
    # nobody cannot read a root process's namespaces, and shares our PID namespace:
    # the host engine's containerd (if one runs) must not be taken for the test's own.
    host_containerd = _containerd_pids()
    done = _run_nobody_in_ns(netns, command, shared_dir, public_checkout, tmp_path)
    result = _driver_result(done)
    assert done.returncode == 0, (result, done.stderr)
    assert _containerd_pids() >= host_containerd
    assert result["chosen"] == result["api_driver"] == "overlay2"
    assert (result["ping_ready"], result["ping_after_stop"]) == (True, False)
    assert (
        "sudo -n /usr/sbin/dockerd --storage-driver overlay2"
        in (shared_dir / "dockerd.log").read_text()
    )


def _containerd_pids() -> set[int]:
    """containerd processes in this test's own mount namespace (the host's engine)."""
    own_ns = os.readlink("/proc/self/ns/mnt")
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
            if os.path.basename(argv0) == b"containerd" and os.readlink(entry / "ns/mnt") == own_ns:
                found.add(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.docker
@pytest.mark.root
def test_non_root_without_passwordless_sudo_is_one_clear_error(
    netns: NetNamespace, tmp_path: Path, shared_dir: Path, public_checkout: PublicCheckout
) -> None:
    _require_sudo()
    rules = shared_dir / "sudoers"
    rules.write_text("# no rule for nobody\n")
    command = _as_nobody(NOBODY_DRIVER, sudoers=rules)
    done = _run_nobody_in_ns(netns, command, shared_dir, public_checkout, tmp_path)
    result = _driver_result(done)
    assert done.returncode == 2
    assert result["error"] == (
        f"ENABLE_DIND needs root to start dockerd, and `sudo -n` refuses for uid {NOBODY} "
        "(sudo: a password is required); add a NOPASSWD sudoers rule or run as root"
    )
    assert not (shared_dir / "dockerd.log").exists()


@pytest.mark.docker
@pytest.mark.root
def test_non_root_without_sudo_is_one_clear_error(
    netns: NetNamespace, tmp_path: Path, shared_dir: Path, public_checkout: PublicCheckout
) -> None:
    no_sudo = shared_dir / "bin"
    no_sudo.mkdir()
    command = _as_nobody(["env", f"PATH={no_sudo}", *NOBODY_DRIVER], sudoers=None)
    done = _run_nobody_in_ns(netns, command, shared_dir, public_checkout, tmp_path)
    result = _driver_result(done)
    assert done.returncode == 2
    assert result["error"] == (
        f"ENABLE_DIND needs root to start dockerd, the runner runs as uid {NOBODY} and sudo "
        "is not installed; run the container as root or install sudo with a NOPASSWD rule "
        "for dockerd"
    )


# --- through the runner ------------------------------------------------------------


def _workspace_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "README").write_text("dind test\n")
    env.update(
        SOURCE_WORKSPACE_DIR=str(source),
        WORKSPACE_DIR=str(tmp_path / "workspace"),
        PIPELINE_WORKSPACES_ROOT=str(tmp_path / "runs"),
    )
    return env


@pytest.mark.docker
@pytest.mark.root
def test_mounted_socket_is_refused_before_anything_starts(
    netns: NetNamespace, tmp_path: Path, claude_env: dict[str, str]
) -> None:
    env = _workspace_env(_env(tmp_path, **claude_env, ENABLE_DIND="yes"), tmp_path)
    # What `docker run -v /var/run/docker.sock:/var/run/docker.sock` does: a bind mount
    # of the host's socket (here a stand-in socket file) over the path.
    host_socket = tmp_path / "host.sock"
    socket.socket(socket.AF_UNIX).bind(str(host_socket))
    mount = f"touch /var/run/docker.sock && mount --bind {host_socket} /var/run/docker.sock"
    command = ["sh", "-c", f'{mount} && exec "$@"', "sh", *RUNNER, "hi"]
    argv = netns.argv(command, data_root="tmpfs", scratch=tmp_path / "scratch")
    done = proc.run(argv, cwd=REPO, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "claude-runner: error: ENABLE_DIND is on but /var/run/docker.sock already exists "
        "(mounted from the host?): mounting an external Docker socket together with DinD is "
        "not allowed; drop the socket mount or set ENABLE_DIND=0"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "workspace").exists()  # refused before the copy
    assert not (tmp_path / "dockerd.log").exists()  # and before any daemon


@pytest.mark.docker
@pytest.mark.root
def test_a_stale_socket_from_a_killed_run_is_not_a_mounted_one(
    netns: NetNamespace, tmp_path: Path
) -> None:
    # `docker restart` after a SIGKILL keeps /var/run: the old socket file is still
    # there, not mounted and not answering. The daemon starts over it.
    bind = "import socket; socket.socket(socket.AF_UNIX).bind('/var/run/docker.sock')"
    command = ["sh", "-c", f'{sys.executable} -c "{bind}" && exec "$@"', "sh", *DRIVER]
    done, _ = _run_in_ns(netns, command, _env(tmp_path), tmp_path)
    result = _driver_result(done)
    assert done.returncode == 0, result
    assert result["chosen"] == "overlay2"
    assert result["ping_ready"] is True


def _bash(command: str) -> ToolUse:
    return ToolUse("Bash", {"command": command, "description": "docker check"})


def _tool_results(api: FakeMessagesAPI) -> str:
    return fakeapi.tool_results(api.requests)


@pytest.mark.docker
@pytest.mark.root
@pytest.mark.cli
def test_agent_runs_a_container_through_the_inner_daemon(
    netns: NetNamespace, tmp_path: Path, fake_api: FakeMessagesAPI, claude_env: dict[str, str]
) -> None:
    image = tiny_image_tar(tmp_path / "tiny.tar")
    fake_api.on(
        "dind-agent-check",
        _bash(
            'echo "host=$DOCKER_HOST"; '
            f"docker import {image} tiny:1 >/dev/null && docker run --rm tiny:1 /true "
            "&& echo inner-run-ok; docker info --format 'driver={{.Driver}}'"
        ),
        Text("all done"),
    )
    env = _workspace_env(_env(tmp_path, **claude_env), tmp_path)
    forwarder = Forwarder(netns.path, int(fake_api.url.rsplit(":", 1)[1].strip("/")))
    try:
        done, report = _run_in_ns(netns, [*RUNNER, "dind-agent-check"], env, tmp_path)
    finally:
        forwarder.close()
    assert done.returncode == 0, done.stderr
    assert report["rc"] == "0"
    assert "all done" in done.stdout
    results = _tool_results(fake_api)
    assert "host=unix:///var/run/docker.sock" in results
    assert "inner-run-ok" in results
    assert "driver=overlay2" in results
    assert "dockerd ready (storage driver overlay2" in done.stderr


@pytest.mark.docker
@pytest.mark.root
@pytest.mark.cli
def test_pipeline_tasks_in_parallel_share_the_inner_daemon(
    netns: NetNamespace, tmp_path: Path, fake_api: FakeMessagesAPI, claude_env: dict[str, str]
) -> None:
    for task in ("p0", "p1"):
        fake_api.on(
            f"dind-pipeline-{task}",
            _bash(
                f'echo "{task}:host=$DOCKER_HOST"; '
                f"docker info --format '{task}:driver={{{{.Driver}}}}'"
            ),
            Text(f"{task} done"),
        )
    env = _workspace_env(_env(tmp_path, **claude_env), tmp_path)
    (tmp_path / "source" / "plan.yml").write_text(
        "version: v1\n"
        "stages:\n"
        "  - id: s\n"
        "    mode: parallel\n"
        "    workspace: shared\n"
        "    tasks:\n"
        "      - {id: p0, prompt: dind-pipeline-p0, allow_shared_writes: true}\n"
        "      - {id: p1, prompt: dind-pipeline-p1, allow_shared_writes: true}\n"
    )
    forwarder = Forwarder(netns.path, int(fake_api.url.rsplit(":", 1)[1].strip("/")))
    try:
        done, _ = _run_in_ns(netns, [*RUNNER, "--pipeline", "plan.yml"], env, tmp_path)
    finally:
        forwarder.close()
    assert done.returncode == 0, done.stderr
    results = _tool_results(fake_api)
    for task in ("p0", "p1"):
        assert f"{task}:host=unix:///var/run/docker.sock" in results
        assert f"{task}:driver=overlay2" in results


@pytest.mark.docker
@pytest.mark.root
@pytest.mark.cli
def test_sigterm_mid_run_stops_agent_then_daemon_and_leaves_nothing(
    netns: NetNamespace, tmp_path: Path, fake_api: FakeMessagesAPI, claude_env: dict[str, str]
) -> None:
    image = tiny_image_tar(tmp_path / "tiny.tar")
    marker = f"{os.getpid() % 1000 + 6000}.{time.time_ns() % 1000:03d}"  # unique argv
    fake_api.on(
        "dind-sigterm-check",
        _bash(
            f"docker import {image} tiny:1 >/dev/null && "
            f"docker run -d --stop-timeout 1 tiny:1 /sleep {marker} >/dev/null && echo started"
        ),
        Hang(120),
    )
    env = _workspace_env(_env(tmp_path, **claude_env), tmp_path)
    forwarder = Forwarder(netns.path, int(fake_api.url.rsplit(":", 1)[1].strip("/")))
    argv = netns.argv(
        [*RUNNER, "dind-sigterm-check"], data_root="tmpfs", scratch=tmp_path / "scratch"
    )
    child = proc.spawn(argv, cwd=REPO, env=env, stdout=subprocess.PIPE)
    out = LineReader(child)
    try:
        mnt = out.wait_for("NS mnt=", 30).split("=", 1)[1]
        _wait(lambda: len(fake_api.requests) >= 2, 90, "the agent's second turn")
        assert "started" in _tool_results(fake_api)
        names = {cmd.split()[0].rsplit("/", 1)[-1] for _, cmd in processes_in(mnt)}
        assert {"dockerd", "containerd", "containerd-shim-runc-v2"} <= names
        assert len(_sleepers(marker)) == 1  # the container's process
        runner = [
            pid
            for pid, cmd in processes_in(mnt)
            if cmd.startswith(sys.executable) and "claude_runner" in cmd
        ]
        assert len(runner) == 1, processes_in(mnt)
        os.kill(runner[0], signal.SIGTERM)
        assert child.wait(timeout=90) == 128 + signal.SIGTERM
    finally:
        forwarder.close()
        if child.poll() is None:
            proc.stop(child, grace=2)
    text = out.text()
    assert ns_report(text).get("left") == "", text
    left = wait_until_empty(mnt)
    assert left == [], f"left behind: {left}"
    assert _sleepers(marker) == []


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


@pytest.mark.docker
@pytest.mark.root
@pytest.mark.cli
def test_interactive_session_sees_the_daemon_which_stops_when_the_cli_exits(
    netns: NetNamespace, tmp_path: Path, fake_api: FakeMessagesAPI, claude_env: dict[str, str]
) -> None:
    from tests.test_interactive import SESSION, Tmux, _seed_claude_home  # noqa: PLC0415

    if shutil.which("tmux") is None:
        pytest.skip("tmux not found: run scripts/setup-dev.sh")
    fake_api.on(
        "dind-interactive-check",
        _bash("echo \"host=$DOCKER_HOST\"; docker info --format 'driver={{.Driver}}'"),
        Text("interactive dind done"),
    )
    env = _workspace_env(_env(tmp_path, **{**claude_env, "TERM": "xterm-256color"}), tmp_path)
    _seed_claude_home(Path(env["HOME"]), Path(env["WORKSPACE_DIR"]), DUMMY_API_KEY)
    forwarder = Forwarder(netns.path, int(fake_api.url.rsplit(":", 1)[1].strip("/")))
    tmux = Tmux(tmp_path, env)
    try:
        argv = netns.argv(RUNNER, data_root="tmpfs", scratch=tmp_path / "scratch")
        tmux.start(argv, cwd=REPO)
        tmux.wait_for("input prompt", lambda s: "bypass permissions on" in s)
        # nsenter and unshare exec (no fork): the pane's process is the namespace's shell.
        mnt = os.readlink(f"/proc/{tmux.pane_pid()}/ns/mnt")
        # The runner stays the CLI's parent (no exec) so it can stop dockerd afterwards.
        live = processes_in(mnt)
        assert "dockerd" in {cmd.split()[0].rsplit("/", 1)[-1] for _, cmd in live}
        assert any(cmd.startswith(f"{sys.executable} -m claude_runner") for _, cmd in live)
        tmux.cmd("send-keys", "-t", SESSION, "-l", "dind-interactive-check")
        tmux.cmd("send-keys", "-t", SESSION, "Enter")
        tmux.wait_for("reply", lambda s: "interactive dind done" in s)
        results = _tool_results(fake_api)
        assert "host=unix:///var/run/docker.sock" in results
        assert "driver=overlay2" in results
        tmux.cmd("send-keys", "-t", SESSION, "-l", "/exit")
        tmux.cmd("send-keys", "-t", SESSION, "Enter")
        screen = tmux.wait_for("the runner's exit", lambda s: "NS rc=" in s)
    finally:
        forwarder.close()
        tmux.kill()
    report = ns_report(screen)
    assert report["rc"] == "0", screen
    assert report["left"] == ""
    assert wait_until_empty(mnt) == []


@pytest.mark.docker
@pytest.mark.root
@pytest.mark.cli
def test_sigterm_during_daemon_start_up_ends_the_wait(
    netns: NetNamespace, tmp_path: Path, claude_env: dict[str, str]
) -> None:
    bin_dir = _hanging_dockerd(tmp_path, ignore_term=False)
    env = _workspace_env(
        _env(
            tmp_path,
            **{
                **claude_env,
                "PATH": f"{bin_dir}:{claude_env['PATH']}",
                "DIND_STARTUP_TIMEOUT_SEC": "600",
            },
        ),
        tmp_path,
    )
    argv = netns.argv([*RUNNER, "never sent"], data_root="tmpfs", scratch=tmp_path / "scratch")
    child = proc.spawn(argv, cwd=REPO, env=env, stdout=subprocess.PIPE)
    out = LineReader(child)
    try:
        mnt = out.wait_for("NS mnt=", 30).split("=", 1)[1]
        _wait((bin_dir / "pids").exists, 60, "the daemon to be started")
        [runner] = [
            pid
            for pid, cmd in processes_in(mnt)
            if cmd.startswith(f"{sys.executable} -m claude_runner")
        ]
        os.kill(runner, signal.SIGTERM)
        # Far below the 600 s start-up timeout: the signal ends the wait.
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if child.poll() is None:
            proc.stop(child, grace=2)
    assert ns_report(out.text())["left"] == ""
    assert wait_until_empty(mnt) == []
    assert len((bin_dir / "pids").read_text().split()) == 1  # no vfs retry after a signal
