"""The stand-in Messages API, proved with the raw pinned CLI (no runner in between)."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from tests.conftest import run_claude
from tests.fakeapi import (
    TITLE,
    FakeMessagesAPI,
    Hang,
    HttpError,
    Text,
    ToolUse,
    is_title_request,
)

pytestmark = pytest.mark.cli


def _json_result(done: proc.Completed) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _post(url: str, body: dict[str, Any], *, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310
        url + "/v1/messages?beta=true",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_text_reply_with_usage_and_cost(
    fake_api: FakeMessagesAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    fake_api.on("marker-text", Text("hello from the fake"))
    done = run_claude(
        claude_bin, ["-p", "say marker-text", "--output-format", "json"], claude_env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    result = _json_result(done)
    assert result["is_error"] is False
    assert result["result"] == "hello from the fake"
    assert result["total_cost_usd"] > 0
    assert result["usage"]["input_tokens"] > 0
    assert result["usage"]["output_tokens"] > 0
    [body] = fake_api.requests
    assert body["stream"] is True
    assert "say marker-text" in json.dumps(body["messages"][0])


def test_write_tool_creates_the_file(
    fake_api: FakeMessagesAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "out.txt"
    fake_api.on(
        "marker-write",
        ToolUse("Write", {"file_path": str(target), "content": "written by the CLI\n"}),
        Text("file written"),
    )
    done = run_claude(
        claude_bin, ["-p", "marker-write", "--output-format", "json"], claude_env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert _json_result(done)["result"] == "file written"
    assert target.read_text() == "written by the CLI\n"
    _, second = fake_api.requests
    results = [b for b in second["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert results, second["messages"][-1]
    assert results[0]["tool_use_id"] == first_tool_id(fake_api, second)


def first_tool_id(fake_api: FakeMessagesAPI, body: dict[str, Any]) -> str:
    """The id of the tool_use block the fake sent, as echoed back by the CLI."""
    del fake_api
    for message in body["messages"]:
        if message["role"] == "assistant":
            for block in message["content"]:
                if block.get("type") == "tool_use":
                    return str(block["id"])
    raise AssertionError("no tool_use in the conversation")


def test_bash_tool_runs(
    fake_api: FakeMessagesAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    fake_api.on(
        "marker-bash",
        ToolUse("Bash", {"command": "echo bash-ran-$((6 * 7)) > proof.txt && cat proof.txt"}),
        Text("bash done"),
    )
    done = run_claude(
        claude_bin, ["-p", "marker-bash", "--output-format", "json"], claude_env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert _json_result(done)["num_turns"] == 2
    assert (tmp_path / "proof.txt").read_text() == "bash-ran-42\n"
    # The command's output travels back to the API as the tool result.
    assert "bash-ran-42" in json.dumps(fake_api.requests[1]["messages"][-1])


@pytest.mark.parametrize("status", [500, 529, 401])
def test_http_error_is_an_error_result(
    status: int,
    fake_api: FakeMessagesAPI,
    claude_bin: str,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> None:
    fake_api.on("marker-boom", HttpError(status, "api_error", "fake failure"))
    done = run_claude(
        claude_bin, ["-p", "marker-boom", "--output-format", "json"], claude_env, cwd=tmp_path
    )
    assert done.returncode == 1
    result = _json_result(done)
    assert result["is_error"] is True
    assert result["api_error_status"] == status


def test_parallel_clis_follow_their_own_scripts(
    fake_api: FakeMessagesAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    markers = [f"marker-par-{i}" for i in range(4)]
    for marker in markers:
        fake_api.on(
            marker,
            ToolUse("Bash", {"command": f"echo {marker}"}),
            Text(f"reply for {marker}"),
        )

    def one(marker: str) -> dict[str, Any]:
        cwd = tmp_path / marker
        cwd.mkdir()
        # Concurrent runs must not share ~/.claude.json (it can be corrupted).
        env = {**claude_env, "CLAUDE_CONFIG_DIR": str(cwd / ".claude-config")}
        done = run_claude(claude_bin, ["-p", marker, "--output-format", "json"], env, cwd=cwd)
        assert done.returncode == 0, done.stderr
        return _json_result(done)

    with ThreadPoolExecutor(len(markers)) as pool:
        results = list(pool.map(one, markers))
    assert [r["result"] for r in results] == [f"reply for {m}" for m in markers]
    assert len(fake_api.requests) == 2 * len(markers)


def test_default_answers_unmatched_prompts(
    fake_api: FakeMessagesAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    fake_api.on("marker-never-sent", Text("wrong"))
    fake_api.default(Text("the default reply"))
    done = run_claude(claude_bin, ["-p", "anything at all"], claude_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the default reply"


def test_hang_holds_the_cli_until_the_server_stops(
    claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    api = FakeMessagesAPI().start()
    api.on("marker-hang", Hang(600))
    env = {**claude_env, "ANTHROPIC_BASE_URL": api.url}
    child = proc.spawn(
        [claude_bin, "--dangerously-skip-permissions", "-p", "marker-hang"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        api.wait_for_requests(1)
        assert child.poll() is None, "the CLI should still be waiting for the reply"
        stopper = threading.Thread(target=api.stop)
        stopper.start()
        stopper.join(timeout=20)
        assert not stopper.is_alive(), "stop() did not release the hung request"
        # Released without a reply: the CLI ends with an error instead of waiting on.
        assert child.wait(timeout=60) != 0
    finally:
        api.stop()
        proc.stop(child, grace=2)
        child.communicate()
    assert api.live_threads() == []


def test_hang_then_replies_after_the_delay(fake_api: FakeMessagesAPI) -> None:
    fake_api.on("slow", Hang(0.2, then=Text("late")))
    body = {"model": "m", "stream": False, "messages": [{"role": "user", "content": "slow"}]}
    status, raw = _post(fake_api.url, body)
    assert status == 200
    assert json.loads(raw)["content"] == [{"type": "text", "text": "late"}]


def test_plain_json_reply_error_body_and_other_paths(fake_api: FakeMessagesAPI) -> None:
    fake_api.on("tool", ToolUse("Bash", {"command": "true"}), Text("after"))
    fake_api.on("bad", HttpError(429, "rate_limit_error", "slow down"))
    user = {"role": "user", "content": [{"type": "text", "text": "use a tool"}]}
    status, raw = _post(fake_api.url, {"model": "m", "messages": [user]})
    message = json.loads(raw)
    assert (status, message["stop_reason"]) == (200, "tool_use")
    assert message["content"][0]["input"] == {"command": "true"}
    assert message["usage"]["input_tokens"] > 0
    assistant = {"role": "assistant", "content": message["content"]}
    _, raw = _post(fake_api.url, {"model": "m", "messages": [user, assistant, user]})
    assert json.loads(raw)["content"][0]["text"] == "after"
    status, raw = _post(
        fake_api.url, {"model": "m", "messages": [{"role": "user", "content": "bad"}]}
    )
    assert status == 429
    assert json.loads(raw) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    head = urllib.request.Request(fake_api.url + "/", method="HEAD")  # noqa: S310
    with urllib.request.urlopen(head, timeout=10) as response:  # noqa: S310
        assert response.status == 200
    with urllib.request.urlopen(fake_api.url + "/api/anything", timeout=10) as response:  # noqa: S310
        assert json.loads(response.read()) == {}


def test_title_requests_are_answered_but_not_recorded(fake_api: FakeMessagesAPI) -> None:
    fake_api.default(HttpError(500, "api_error", "a title request must not reach the rules"))
    # The shape the CLI 2.1.332 sends in interactive mode (when non-essential traffic is
    # allowed): no tools, a JSON schema with one "title" property, the prompt in <session>.
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
        "additionalProperties": False,
    }
    body = {
        "model": "claude-opus-5-5",
        "max_tokens": 128000,
        "stream": True,
        "tools": [],
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": 'Return JSON with a single "title" field.'},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<session>\nfix it\n</session>"}]}
        ],
        "output_config": {"effort": "medium", "format": {"type": "json_schema", "schema": schema}},
    }
    assert is_title_request(body)
    assert is_title_request({**body, "system": []})  # the schema alone is enough
    assert is_title_request({k: v for k, v in body.items() if k != "output_config"})
    status, raw = _post(fake_api.url, {**body, "stream": False})
    assert status == 200
    assert json.loads(json.loads(raw)["content"][0]["text"]) == {"title": TITLE}
    assert fake_api.requests == []
    # The same conversation with tools is a real turn, recorded and scripted.
    real = {**body, "stream": False, "tools": [{"name": "Bash"}]}
    assert not is_title_request(real)
    status, _ = _post(fake_api.url, real)
    assert status == 500
    assert len(fake_api.requests) == 1
