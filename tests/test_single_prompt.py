"""Single-prompt mode end to end: ``python -m claude_runner [opts] words...`` running the
real pinned CLI against the stand-in Messages API, in a copied workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from tests.conftest import REPO, RunRunner
from tests.fakeapi import FakeMessagesAPI, HttpError, Text, ToolUse, first_user_text

pytestmark = pytest.mark.cli


@dataclass(frozen=True)
class Tree:
    """A source tree, the (not yet existing) workspace it is copied to, and the env."""

    source: Path
    workspace: Path
    env: dict[str, str]


@pytest.fixture
def tree(tmp_path: Path, claude_env: dict[str, str]) -> Tree:
    source = tmp_path / "source"
    (source / "pkg").mkdir(parents=True)
    (source / "README.md").write_text("the source tree\n")
    (source / "pkg" / "mod.py").write_text("VALUE = 1\n")
    workspace = tmp_path / "workspace"
    env = {
        **claude_env,
        "SOURCE_WORKSPACE_DIR": str(source),
        "WORKSPACE_DIR": str(workspace),
    }
    return Tree(source, workspace, env)


def _last_prompt(body: dict[str, Any]) -> str:
    """The text block the user typed: the last one of the first user message."""
    content = body["messages"][0]["content"]
    texts = [b["text"] for b in content if b.get("type") == "text"]
    return str(texts[-1])


def _no_traceback(done: proc.Completed) -> None:
    assert "Traceback" not in done.stderr, done.stderr


def test_text_mode_prints_the_reply_from_the_copied_workspace(
    fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    fake_api.on("marker-text-mode", Text("plain reply from the fake"))
    done = run_runner(["say", "marker-text-mode", "please"], tree.env)
    assert done.returncode == 0, done.stderr
    # The CLI's stdout passes through unchanged: the reply and nothing else.
    assert done.stdout == "plain reply from the fake\n"
    [body] = fake_api.requests
    # The task words arrive joined by single spaces, as one prompt.
    assert _last_prompt(body) == "say marker-text-mode please"
    # The CLI ran in the workspace copy, not in the source.
    assert f"Primary working directory: {tree.workspace}" in json.dumps(body["messages"])
    assert (tree.workspace / "pkg" / "mod.py").read_text() == "VALUE = 1\n"
    assert (tree.workspace / "README.md").read_text() == "the source tree\n"


def test_v_prints_exactly_one_json_result(
    fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    fake_api.on("marker-json-mode", Text("json reply"))
    done = run_runner(["-v", "marker-json-mode"], tree.env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # one document: json.loads rejects trailing data
    assert isinstance(result, dict)
    assert result["type"] == "result"
    assert result["result"] == "json reply"
    assert result["is_error"] is False
    assert result["total_cost_usd"] > 0
    assert _last_prompt(fake_api.requests[0]) == "marker-json-mode"


def test_vv_streams_json_lines_from_init_to_result(
    fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    fake_api.on(
        "marker-stream-mode",
        ToolUse("Bash", {"command": "echo streamed"}),
        Text("stream reply"),
    )
    done = run_runner(["marker-stream-mode", "-vv"], tree.env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    first, last = lines[0], lines[-1]
    assert (first["type"], first["subtype"]) == ("system", "init")
    assert first["session_id"]
    assert first["cwd"] == str(tree.workspace)
    assert last["type"] == "result"
    assert last["result"] == "stream reply"
    assert last["session_id"] == first["session_id"]
    assert last["num_turns"] == 2
    assert {"assistant", "user"} <= {line["type"] for line in lines}


def test_agent_writes_in_the_workspace_not_in_the_source(
    fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    fake_api.on(
        "marker-make-file",
        # A relative path: proves the tool's cwd is the workspace.
        ToolUse("Bash", {"command": "pwd > made-by-agent.txt"}),
        ToolUse(
            "Write",
            {"file_path": str(tree.workspace / "pkg" / "new.py"), "content": "NEW = 2\n"},
        ),
        Text("files made"),
    )
    done = run_runner(["marker-make-file"], tree.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "files made\n"
    assert (tree.workspace / "made-by-agent.txt").read_text() == f"{tree.workspace}\n"
    assert (tree.workspace / "pkg" / "new.py").read_text() == "NEW = 2\n"
    assert sorted(p.name for p in tree.source.rglob("*")) == ["README.md", "mod.py", "pkg"]


@pytest.mark.parametrize("verbosity", [[], ["-v"]])
def test_api_error_exits_1(
    verbosity: list[str], fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    fake_api.on("marker-api-boom", HttpError(529, "overloaded_error", "fake overload"))
    done = run_runner([*verbosity, "marker-api-boom"], tree.env)
    assert done.returncode == 1
    _no_traceback(done)
    if verbosity:
        result = json.loads(done.stdout)
        assert result["is_error"] is True
        assert result["api_error_status"] == 529


@pytest.mark.parametrize("model", ["opus", "sonnet"])
def test_model_option_reaches_the_api(
    model: str, fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    done = run_runner(["--model", model, "marker-model"], tree.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
    [body] = fake_api.requests
    assert model in body["model"], body["model"]


def test_missing_cli_exits_2_before_anything_starts(
    fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "claude"
    done = run_runner(["marker-missing"], {**tree.env, "CLAUDE_BIN": str(missing)})
    assert done.returncode == 2
    _no_traceback(done)
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("claude-runner: error: ")
    assert str(missing) in line
    assert "CLAUDE_BIN" in line
    # Checked before the copy and before any agent: nothing ran, nothing was copied.
    assert fake_api.requests == []
    assert not tree.workspace.exists()


@pytest.mark.root
@pytest.mark.parametrize("is_sandbox", [None, "yes"])
def test_root_without_is_sandbox_1_exits_2_and_explains(
    is_sandbox: str | None, fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0: the check only applies to root")
    env = {k: v for k, v in tree.env.items() if k != "IS_SANDBOX"}
    if is_sandbox is not None:
        env["IS_SANDBOX"] = is_sandbox
    done = run_runner(["marker-root"], env)
    assert done.returncode == 2
    _no_traceback(done)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("claude-runner: error: ")
    assert "root" in line
    assert "non-root" in line
    assert "IS_SANDBOX=1" in line
    assert fake_api.requests == []
    assert not tree.workspace.exists()


def test_pipeline_with_task_words_exits_2(
    fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    plan = tree.source / "plan.yaml"
    plan.write_text("version: 1\n")
    done = run_runner(["--pipeline", str(plan), "some", "task"], tree.env)
    assert done.returncode == 2
    _no_traceback(done)
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert "--pipeline" in line
    assert "task words" in line
    assert fake_api.requests == []
    assert not tree.workspace.exists()


def test_secrets_never_appear_in_the_runner_output(
    fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    api_key = "sk-ant-api03-SECRETVALUEforTESTSonly-000111222333"
    gh_token = "ghp_SecretGitHubTokenForTests0123456789"
    env = {**tree.env, "ANTHROPIC_API_KEY": api_key, "GH_TOKEN": gh_token}
    fake_api.on(
        "marker-secrets",
        ToolUse("Bash", {"command": "echo tool output"}),
        Text("secrets reply"),
    )
    done = run_runner(["--debug", "-vv", "marker-secrets"], env)
    assert done.returncode == 0, done.stderr
    for secret in (api_key, gh_token):
        assert secret not in done.stdout
        assert secret not in done.stderr
    # The key was still handed to the CLI, which sent it to the API.
    assert {h.get("x-api-key") for h in fake_api.headers} == {api_key}
    assert "marker-secrets" in first_user_text(fake_api.requests[0])


def test_cli_gets_dev_null_not_the_runners_stdin(
    fake_api: FakeMessagesAPI, tree: Tree, claude_bin: str
) -> None:
    """The CLI appends whatever it reads on stdin to the prompt; the runner must not
    hand its own stdin (here an open pipe with text) down to it."""
    fake_api.on("marker-stdin", Text("stdin reply"))
    child = proc.spawn(
        [sys.executable, "-m", "claude_runner", "marker-stdin"],
        cwd=REPO,
        env=tree.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = child.communicate(b"INJECTED-FROM-STDIN\n", timeout=120)
    finally:
        proc.stop(child, grace=2)
    assert child.returncode == 0, err.decode()
    assert out.decode() == "stdin reply\n"
    [body] = fake_api.requests
    assert "INJECTED-FROM-STDIN" not in json.dumps(body["messages"])
    assert _last_prompt(body) == "marker-stdin"


def test_agent_commits_with_the_configured_git_identity(
    fake_api: FakeMessagesAPI, tree: Tree, run_runner: RunRunner
) -> None:
    fake_api.on(
        "marker-commit",
        ToolUse(
            "Bash",
            {"command": "git init -q && git add -A && git commit -qm 'agent commit'"},
        ),
        Text("committed"),
    )
    env = {**tree.env, "GIT_USER_NAME": "Test Agent", "GIT_USER_EMAIL": "agent@test.invalid"}
    done = run_runner(["marker-commit"], env)
    assert done.returncode == 0, done.stderr
    log = proc.run(["git", "log", "--format=%an <%ae>|%s"], cwd=tree.workspace, env=env, timeout=30)
    assert log.returncode == 0, log.stderr
    assert log.stdout == "Test Agent <agent@test.invalid>|agent commit\n"
    # The commit used the workspace copy; the source stays untouched.
    assert not (tree.source / ".git").exists()
