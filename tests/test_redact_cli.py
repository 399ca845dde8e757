"""Redaction end to end with the real CLI against the stand-in API: the agent prints its
credentials (after a newline, cut mid-way, as a token of a known shape) and nothing the
runner writes or prints keeps them: single-prompt stdout and stderr in every verbosity,
the pipeline's events, result, task log, dry-run output and the tasks' config dirs."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from tests.conftest import DUMMY_API_KEY, REPO, RunRunner
from tests.fakeapi import FakeMessagesAPI, HttpError, Text, ToolUse
from tests.runs import Runner, of_type, plan_of, result_of, task

pytestmark = pytest.mark.cli

GH_TOKEN = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
OTHER_TOKEN = "ghp_" + "Z9y8X7w6" * 4 + "V5u4"  # unknown to the runner: masked by shape
# The tool prints: a token after a newline, the known values, 200 kB of GH_TOKEN lines
# (the CLI cuts its preview mid-token).
LEAKY_COMMAND = (
    f"printf 'x\\n{OTHER_TOKEN}\\n' > tok.txt && cat tok.txt && "
    'echo "key=$ANTHROPIC_API_KEY gh=$GH_TOKEN" && yes "$GH_TOKEN" | head -c 200000'
)
REPLY = f"done: {GH_TOKEN} and {DUMMY_API_KEY} and\n{OTHER_TOKEN} and {GH_TOKEN[:20]}"
MASKED_REPLY = "done: *** and *** and\n*** and ***"
NEEDLES = (GH_TOKEN[:16], GH_TOKEN[-16:], DUMMY_API_KEY[:16], DUMMY_API_KEY[-16:], "Z9y8X7w6")


def leak_free(text: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} leaked"


@pytest.fixture
def env(claude_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("tree\n")
    return {
        **claude_env,
        "GH_TOKEN": GH_TOKEN,
        "SOURCE_WORKSPACE_DIR": str(source),
        "WORKSPACE_DIR": str(tmp_path / "workspace"),
    }


@pytest.mark.parametrize("verbosity", ["text", "v", "vv"])
def test_single_prompt_output_is_masked_in_every_verbosity(
    verbosity: str, fake_api: FakeMessagesAPI, env: dict[str, str], run_runner: RunRunner
) -> None:
    fake_api.on("marker-leak", ToolUse("Bash", {"command": LEAKY_COMMAND}), Text(REPLY))
    flags = {"text": [], "v": ["-v"], "vv": ["-vv"]}[verbosity]
    done = run_runner([*flags, "marker-leak"], env)
    assert done.returncode == 0, done.stderr
    leak_free(done.stdout + done.stderr)
    # The key still reached the API, and the tool really printed the secrets.
    assert {h["x-api-key"] for h in fake_api.headers} == {DUMMY_API_KEY}
    assert GH_TOKEN in json.dumps(fake_api.requests[-1]["messages"])
    if verbosity == "text":
        assert done.stdout == MASKED_REPLY + "\n"  # otherwise byte-identical
    elif verbosity == "v":
        assert json.loads(done.stdout)["result"] == MASKED_REPLY
    else:
        lines = [json.loads(line) for line in done.stdout.splitlines()]  # still valid JSON
        assert lines[-1]["result"] == MASKED_REPLY
        tool_output = json.dumps([m for m in lines if m["type"] == "user"])
        assert "x\\n***\\n" in tool_output  # the token after a newline
        assert "key=*** gh=***" in tool_output


def test_single_prompt_stderr_is_masked_and_the_exit_code_passes_through(
    fake_api: FakeMessagesAPI, env: dict[str, str], run_runner: RunRunner
) -> None:
    # The CLI warns on its stderr about a model it does not know, naming it; the API
    # error lands on stdout, with exit code 1.
    fake_api.on("marker-err", HttpError(400, "invalid_request_error", f"bad {GH_TOKEN}!"))
    done = run_runner(["marker-err"], {**env, "ANTHROPIC_MODEL": GH_TOKEN})
    assert done.returncode == 1
    leak_free(done.stdout + done.stderr)
    assert 'the model "***"' in done.stderr
    assert done.stdout == "API Error: 400 bad ***!\n"


def test_single_prompt_output_streams_before_the_cli_exits(
    fake_api: FakeMessagesAPI, env: dict[str, str], tmp_path: Path
) -> None:
    """The tool waits for a file the test creates only after it has read the CLI's first
    lines from the runner: had the runner buffered the output, the wait would end at its
    bound (100 s) and the test fail."""
    go = tmp_path / "go"
    wait = f"for i in $(seq 2000); do [ -e {go} ] && break; sleep 0.05; done; echo waited-$i"
    fake_api.on("marker-stream", ToolUse("Bash", {"command": wait}), Text("streamed"))
    child = proc.spawn(
        [sys.executable, "-m", "claude_runner", "-vv", "marker-stream"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)
        lines.put(b"")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        seen: list[dict[str, Any]] = []
        while not any(m.get("type") == "assistant" for m in seen):
            line = lines.get(timeout=90)
            assert line, "the runner's output ended before the tool call was shown"
            seen.append(json.loads(line))
        assert child.poll() is None  # the CLI is still waiting in its tool
        go.touch()
        rest = []
        while line := lines.get(timeout=90):
            rest.append(json.loads(line))
        assert child.wait(timeout=60) == 0
    finally:
        proc.stop(child, grace=2)
        reader.join(timeout=10)
    assert rest[-1]["result"] == "streamed"
    assert "waited-" in json.dumps(rest)


def test_dry_run_masks_prompts(env: dict[str, str], run_runner: RunRunner) -> None:
    plan = Path(env["SOURCE_WORKSPACE_DIR"]) / "plan.yml"
    plan.write_text(
        "version: v1\nstages:\n  - id: s\n    tasks:\n"
        f'      - {{id: t, prompt: "push with {GH_TOKEN} and\\n{OTHER_TOKEN}"}}\n'
    )
    done = run_runner(["--pipeline", str(plan), "--dry-run"], env)
    assert done.returncode == 0, done.stderr
    leak_free(done.stdout)
    assert "push with *** and\\n***" in done.stdout


# --- pipeline ------------------------------------------------------------------------
@pytest.fixture
def cli(cli: Runner) -> Runner:
    cli.env = {**cli.env, "GH_TOKEN": GH_TOKEN}
    return cli


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def credential_keys(node: object) -> set[str]:
    """Keys named like credentials anywhere in a JSON value."""
    found: set[str] = set()
    if isinstance(node, dict):
        found |= {k for k in node if k in ("primaryApiKey", "accessToken", "refreshToken")}
        for value in node.values():
            found |= credential_keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= credential_keys(value)
    return found


def assert_no_credentials(config_root: Path, *secrets: str) -> None:
    """No secret, nor a piece of 16 bytes of it, and no credential key, in any file."""
    files = files_under(config_root)
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            for piece in (secret, secret[:16], secret[-16:]):
                assert piece.encode() not in data, f"{piece!r} in {path}"
        for line in data.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            assert not credential_keys(doc), path
        if path.suffix == ".json":
            assert not credential_keys(json.loads(data)), path


def test_pipeline_outputs_logs_and_config_dirs_keep_no_secret(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    fake_api.on("marker-leak", ToolUse("Bash", {"command": LEAKY_COMMAND}), Text(REPLY))
    code, events = cli.run(
        plan_of({"id": "s", "tasks": [{"id": "t", "prompt": "marker-leak"}]}, verbosity="vv")
    )
    assert code == 0, result_of(events)
    t = task(events, "s", "t")
    run_dir = Path(result_of(events)["run_dir"])
    for text in (
        json.dumps(events),
        (run_dir / "events.jsonl").read_text(),
        (run_dir / "result.json").read_text(),
        Path(t["log"]).read_text(),
    ):
        leak_free(text)
    assert t["result"] == MASKED_REPLY
    assert any("x\\n***\\n" in json.dumps(e["message"]) for e in of_type(events, "task_output"))
    # The CLI kept the tool's output in its transcript and tool-results: scrubbed.
    config_root = run_dir / "config"
    names = {p.name for p in files_under(config_root)}
    assert any(n.endswith(".jsonl") for n in names)
    assert_no_credentials(config_root, GH_TOKEN, DUMMY_API_KEY)
    # ... and the transcript is still there, masked.
    transcript = next(p for p in files_under(config_root) if p.suffix == ".jsonl")
    assert "***" in transcript.read_text()


def test_the_users_primary_api_key_is_passed_in_the_environment_never_on_disk(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    primary = "sk-ant-api03-PRIMARYkeyOfTheUser-0123456789"
    del cli.env["ANTHROPIC_API_KEY"]
    home = Path(cli.env["HOME"])
    user_config = {
        "primaryApiKey": primary,
        "customApiKeyResponses": {"approved": [primary[-20:]], "rejected": []},
        "hasCompletedOnboarding": True,
        "userID": "u1",
    }
    (home / ".claude.json").write_text(json.dumps(user_config))
    fake_api.on(
        "marker-key", ToolUse("Bash", {"command": 'echo "k=$ANTHROPIC_API_KEY"'}), Text("ok")
    )
    plan = plan_of(
        {
            "id": "s",
            "mode": "parallel",
            "tasks": [
                {"id": "a", "prompt": "marker-key", "read_only": True},
                {"id": "b", "prompt": "marker-key", "read_only": True},
            ],
        },
        verbosity="vv",
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    assert {h["x-api-key"] for h in fake_api.headers} == {primary}  # the CLI used it
    assert "k=***" in json.dumps(of_type(events, "task_output"))
    run_dir = Path(result_of(events)["run_dir"])
    leak_free((run_dir / "events.jsonl").read_text())
    config_root = run_dir / "config"
    assert len(list(config_root.glob("slot-*"))) == 2
    assert_no_credentials(config_root, primary, primary[-20:])
    assert not list(config_root.rglob("backups/*"))
    seeded = json.loads((config_root / "slot-0" / ".claude.json").read_text())
    assert seeded["hasCompletedOnboarding"] is True  # seeded keys kept, credentials gone


def test_an_oauth_login_is_copied_while_in_effect_and_removed_after_the_stage(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    access, refresh = "sk-ant-oat01-ACCESStoken-0123456789", "sk-ant-ort01-REFRESH-0123456789"
    del cli.env["ANTHROPIC_API_KEY"]
    claude_dir = Path(cli.env["HOME"]) / ".claude"
    claude_dir.mkdir()
    login = {
        "claudeAiOauth": {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresAt": 4102444800000,  # 2100: no refresh during the test
            "scopes": ["user:inference"],
            "subscriptionType": "max",
        }
    }
    (claude_dir / ".credentials.json").write_text(json.dumps(login))
    fake_api.on("marker-oauth", ToolUse("Bash", {"command": f"ls -a {os.sep}dev/null"}), Text("ok"))
    code, events = cli.run(plan_of({"id": "s", "tasks": [{"id": "t", "prompt": "marker-oauth"}]}))
    assert code == 0, result_of(events)
    assert {h["authorization"] for h in fake_api.headers} == {f"Bearer {access}"}
    config_root = Path(result_of(events)["run_dir"]) / "config"
    assert not list(config_root.rglob(".credentials.json"))
    assert_no_credentials(config_root, access, refresh)
