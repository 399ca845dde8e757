"""Rehearsals: the real CLI against the built-in stand-in model, for $0 and with no real
credential reaching an agent; scripted tools, errors that retries absorb, a budget stop,
a structured output that fans out."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_runner import proc
from claude_runner.plan.resolved import Controls
from claude_runner.redact import SECRET_ENV_VARS
from claude_runner.rehearsal import Rehearsal
from tests.conftest import RunRunner
from tests.runs import (
    Runner,
    fast_retries,
    of_type,
    plan_of,
    result_of,
    set_task,
    task,
    tuned,
    written_files,
)

pytestmark = pytest.mark.cli

REAL = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-real-looking-key-0123456789abcdef",
    "GH_TOKEN": "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
    "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-real-looking-token-0123456789",
}


@pytest.fixture
def rehearsing(tmp_path: Path, claude_bin: str) -> Iterator[Runner]:
    """An in-process runner with the real CLI and a rehearsal, real-looking credentials
    in its environment."""
    r = Runner(tmp_path)
    r.claude_bin = claude_bin
    r.env = {**os.environ, **REAL, "IS_SANDBOX": "1"}
    for name in ("ANTHROPIC_BASE_URL", "CLAUDE_CONFIG_DIR"):
        r.env.pop(name, None)
    with Rehearsal(secret_names=SECRET_ENV_VARS) as rehearsal:
        r.rehearsal = rehearsal
        yield r


def test_a_scripted_rehearsal_runs_the_real_thing_with_no_real_credential(
    rehearsing: Runner,
) -> None:
    ws = rehearsing.workspace
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "base"]):
        proc.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=ws)
    plan = tuned(plan_of({"id": "s", "tasks": [{"id": "w", "prompt": "write notes"}]}))
    script = {
        "tools": [
            {"bash": "env > seen-env.txt"},
            {"write": {"path": "notes.md", "content": "rehearsed\n"}},
        ],
        "result": "notes written",
    }
    plan = set_task(plan, ("s", "w"), rehearse=script, workspace="worktree")
    code, events = rehearsing.run(plan)
    w = task(events, "s", "w")
    assert code == 0, w
    assert w["result"] == "notes written"
    assert all(e.get("rehearsal") is True for e in events)
    assert result_of(events)["rehearsal"] is True
    copy = written_files(w)
    assert (copy / "notes.md").read_text() == "rehearsed\n"
    seen = (copy / "seen-env.txt").read_text()
    for value in REAL.values():
        assert value not in seen
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:" in seen
    assert "ANTHROPIC_API_KEY=sk-rehearsal-" in seen
    # The real thing: a branch and a patch with the agent's files.
    assert "notes.md" in Path(w["patch"]).read_text()
    assert w["branch"].startswith("pipeline/")
    # No credential was copied into the agents' config dirs either.
    config = Path(result_of(events)["run_dir"]) / "config"
    for path in config.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not any(value in text for value in REAL.values()), path


def test_a_scripted_529_is_retried_and_a_budget_overrun_is_stopped(
    rehearsing: Runner,
) -> None:
    plan = tuned(
        plan_of(
            {
                "id": "s",
                "mode": "parallel",
                "workspace": "snapshot_ro",
                "tasks": [{"id": "flaky", "prompt": "flaky"}, {"id": "dear", "prompt": "dear"}],
            },
            on_error="continue",
        ),
        retries=fast_retries(2),
    )
    plan = set_task(plan, ("s", "flaky"), rehearse={"error": 529, "errors_before_success": 1})
    plan = set_task(
        plan,
        ("s", "dear"),
        rehearse={"tools": [{"bash": "true"}] * 5, "usage": {"output_tokens": 200_000}},
        controls=Controls(max_budget_usd=1.0),
    )
    code, events = rehearsing.run(plan)
    flaky, dear = task(events, "s", "flaky"), task(events, "s", "dear")
    assert code == 1
    assert [(a["status"], a["failure_kind"]) for a in flaky["attempts"]] == [
        ("failed", "api_error"),
        ("succeeded", None),
    ]
    assert [e["kind"] for e in of_type(events, "task_retry")] == ["api_error"]
    assert (dear["status"], dear["failure_kind"]) == ("failed", "budget")
    assert dear["num_turns"] is None or dear["num_turns"] < 6  # stopped before the end


def test_a_scripted_structured_output_fans_out(rehearsing: Runner) -> None:
    plan = tuned(
        plan_of(
            {"id": "plan", "tasks": [{"id": "planner", "prompt": "list modules"}]},
            {
                "id": "port",
                "mode": "parallel",
                "workspace": "snapshot_ro",
                "tasks": [{"id": "port", "prompt": "port ${{ item }}"}],
            },
        )
    )
    schema = {
        "type": "object",
        "properties": {"modules": {"type": "array", "items": {"type": "string"}}},
        "required": ["modules"],
    }
    plan = set_task(
        plan,
        ("plan", "planner"),
        output_schema=schema,
        rehearse={"output": {"modules": ["api", "db"]}},
    )
    plan = set_task(plan, ("port", "port"), for_each="${{ tasks.planner.output.modules }}")
    code, events = rehearsing.run(plan)
    assert code == 0, result_of(events)
    assert task(events, "plan", "planner")["output"] == {"modules": ["api", "db"]}
    ports = [t for t in result_of(events)["tasks"] if t["instance_of"] == "port"]
    # The default answer echoes each instance's rendered prompt.
    assert [t["result"] for t in ports] == ["port api", "port db"]


def test_single_prompt_rehearsal_needs_no_key(
    tmp_path: Path, claude_bin: str, run_runner: RunRunner
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "IS_SANDBOX": "1",
        "CLAUDE_BIN": claude_bin,
        "WORKSPACE_DIR": str(tmp_path / "ws"),
    }
    done = run_runner(["--rehearse", "-v", "say", "hello"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "say hello"
    assert "rehearsal: the agents talk to a stand-in model" in done.stderr
