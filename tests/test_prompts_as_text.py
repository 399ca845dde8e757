"""A prompt is never read as an option: every prompt, in every mode, from the command
line, a plan or a prompt file, reaches the model as text (the real CLI, the stand-in API).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunRunner
from tests.fakeapi import FakeMessagesAPI, Text, first_user_text
from tests.runs import Runner, plan_of, result_of, task

pytestmark = pytest.mark.cli

# What the CLI's option parser would take: its flags (short, long, with values, with
# "="), the end-of-options marker itself, and stdin's "-".
OPTION_LIKE = [
    "--version",
    "--help",
    "-h",
    "-v",
    "-p",
    "--print",
    "-c",
    "--continue",
    "-r",
    "--resume abc",
    "--model=opus hi",
    "--output-format json",
    "--dangerously-skip-permissions",
    "--mcp-config x.json",
    "--",
    "-",
    "-v is a flag",
]


def _saw(fake_api: FakeMessagesAPI, prompt: str) -> bool:
    """The model got ``prompt`` as the user's text (after the CLI's own reminders)."""
    return any(
        first_user_text(body).rstrip().endswith(prompt.rstrip()) for body in fake_api.requests
    )


@pytest.mark.parametrize("prompt", OPTION_LIKE)
def test_single_prompt_mode(
    prompt: str,
    fake_api: FakeMessagesAPI,
    claude_env: dict[str, str],
    tmp_path: Path,
    run_runner: RunRunner,
) -> None:
    fake_api.default(Text("answered as text"))
    env = {**claude_env, "WORKSPACE_DIR": str(tmp_path / "ws")}
    done = run_runner(["--", *prompt.split(" ")], env)
    assert (done.returncode, done.stdout) == (0, "answered as text\n"), done.stderr
    assert _saw(fake_api, prompt)


def test_runner_options_before_the_end_of_options(
    fake_api: FakeMessagesAPI,
    claude_env: dict[str, str],
    tmp_path: Path,
    run_runner: RunRunner,
) -> None:
    # The README's second example: -v is the runner's, --help after -- is the prompt.
    fake_api.default(Text("answered as text"))
    env = {**claude_env, "WORKSPACE_DIR": str(tmp_path / "ws")}
    done = run_runner(["-v", "--", "--help"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "answered as text"
    assert _saw(fake_api, "--help")


def test_plan_prompts_and_prompt_files(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.default(Text("answered as text"))
    (cli.workspace / "p.md").write_text("--version\n")
    tasks: list[dict[str, Any]] = [
        {"id": f"t{i}", "prompt": prompt} for i, prompt in enumerate(OPTION_LIKE)
    ]
    tasks.append({"id": "from-file", "prompt_file": "p.md"})
    stage = {"id": "s", "mode": "parallel", "max_parallel": 4, "tasks": tasks}
    code, events = cli.run(plan_of(stage, workspace="snapshot_ro"))
    assert code == 0, result_of(events)
    for i, prompt in enumerate(OPTION_LIKE):
        assert task(events, "s", f"t{i}")["result"] == "answered as text"
        assert _saw(fake_api, prompt)
    assert task(events, "s", "from-file")["result"] == "answered as text"
    assert _saw(fake_api, "--version\n")
