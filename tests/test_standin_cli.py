"""The stand-in's rehearsal features, proved with the raw pinned CLI: scripts routed by
API key, structured outputs, attempts, usage, and the concurrency limit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from claude_runner import proc
from claude_runner.standin import env as standin_env
from claude_runner.standin import script
from claude_runner.standin.replies import Hang
from claude_runner.standin.server import StandinAPI
from tests.conftest import run_claude

pytestmark = pytest.mark.cli


def _run(
    api: StandinAPI,
    claude_bin: str,
    base_env: dict[str, str],
    cwd: Path,
    prompt: str,
    *extra: str,
    key: str | None = None,
) -> tuple[int, dict[str, Any], str]:
    """The CLI with its own dummy key (so the stand-in routes it); its result message."""
    agent_env = standin_env.agent_env(
        base_env, url=api.url, api_key=key or standin_env.new_api_key()
    )
    done = run_claude(
        claude_bin,
        ["-p", "--output-format", "json", *extra, "--", prompt],
        agent_env,
        cwd=cwd,
    )
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, result, done.stderr


def test_script_runs_its_tools_then_answers(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    key = standin_env.new_api_key()
    fake_api.assign(
        key,
        script.load(
            {
                "tools": [
                    {"bash": "echo ran > ran.txt"},
                    {"write": {"path": "sub/notes.md", "content": "scripted\n"}},
                ],
                "result": "all done",
            }
        ),
    )
    code, result, stderr = _run(fake_api, claude_bin, claude_env, tmp_path, "do it", key=key)
    assert code == 0, stderr
    assert (result["result"], result["num_turns"]) == ("all done", 3)
    assert (tmp_path / "ran.txt").read_text() == "ran\n"
    assert (tmp_path / "sub" / "notes.md").read_text() == "scripted\n"
    assert {h["x-api-key"] for h in fake_api.headers} == {key}


def test_default_script_echoes_the_prompt(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    fake_api.default_script(script.Script())
    code, result, stderr = _run(
        fake_api, claude_bin, claude_env, tmp_path, "-v summarise the README"
    )
    assert code == 0, stderr
    assert result["result"] == "-v summarise the README"


SCHEMA = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "ports": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "risk": {"enum": ["low", "high"]},
    },
    "required": ["approved", "ports"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "given", [None, {"approved": False, "ports": ["a", "b", "c"]}], ids=["generated", "given"]
)
def test_structured_output_reaches_the_result(
    given: dict[str, Any] | None,
    fake_api: StandinAPI,
    claude_bin: str,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> None:
    key = standin_env.new_api_key()
    fake_api.assign(key, script.load({"output": given}))
    code, result, stderr = _run(
        fake_api,
        claude_bin,
        claude_env,
        tmp_path,
        "review",
        "--json-schema",
        json.dumps(SCHEMA),
        key=key,
    )
    assert code == 0, stderr
    output = result["structured_output"]
    jsonschema.validate(output, SCHEMA)
    if given is not None:
        assert output == given
    assert json.loads(result["result"]) == output


def test_errors_before_success_fail_the_first_attempts_only(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    flaky = script.load({"error": 529, "errors_before_success": 1, "result": "recovered"})
    outcomes = []
    for attempt in (1, 2):
        key = standin_env.new_api_key()
        fake_api.assign(key, flaky, attempt=attempt, task="stage/task")
        code, result, _ = _run(fake_api, claude_bin, claude_env, tmp_path, "go", key=key)
        outcomes.append((code, result["is_error"], result.get("api_error_status")))
    assert outcomes == [(1, True, 529), (0, False, None)]


def test_scripted_usage_is_priced_by_the_cli(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    key = standin_env.new_api_key()
    fake_api.assign(key, script.load({"usage": {"input_tokens": 500_000}}))
    code, result, stderr = _run(
        fake_api, claude_bin, claude_env, tmp_path, "go", "--model", "opus", key=key
    )
    assert code == 0, stderr
    # The default model's list price is $4 per million input tokens (measured).
    assert result["total_cost_usd"] == pytest.approx(2.0, abs=0.01)


def test_a_script_survives_the_compaction_its_huge_usage_causes(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    # 2M input tokens fill the default model's context: the CLI compacts before its next
    # turn (asking the stand-in for a summary), and the script goes on from its count.
    key = standin_env.new_api_key()
    fake_api.assign(
        key,
        script.load(
            {
                "tools": [{"bash": "echo one > one.txt"}],
                "result": "finished",
                "usage": {"input_tokens": 2_000_000},
            }
        ),
    )
    code, result, stderr = _run(fake_api, claude_bin, claude_env, tmp_path, "go", key=key)
    assert code == 0, stderr
    assert result["result"] == "finished"
    assert (tmp_path / "one.txt").exists()
    assert fake_api.stats().compactions >= 1


def test_concurrency_limit_rate_limits_a_second_cli(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    fake_api.limit_concurrency(1, retry_after=1)
    fake_api.on("holds the only slot", Hang(600))
    first = proc.spawn(
        [claude_bin, "--dangerously-skip-permissions", "-p", "holds the only slot"],
        cwd=tmp_path,
        env=claude_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        fake_api.wait_for_requests(1)
        code, result, _ = _run(fake_api, claude_bin, claude_env, tmp_path, "second")
    finally:
        fake_api.stop()
        proc.stop(first, grace=2)
        first.wait()
    assert (code, result["is_error"], result["api_error_status"]) == (1, True, 429)
    assert fake_api.stats().rejected == 1
