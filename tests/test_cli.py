"""The command line: runner options and task words interleave as in the seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from claude_runner.cli import Args, main, parse_args
from claude_runner.config import ENV_VARS
from claude_runner.errors import UsageError


def test_seed_single_prompt_example() -> None:
    args = parse_args(["--model", "sonnet", "-v", "run unit tests"])
    assert args == Args(model="sonnet", verbosity="v", task=("run unit tests",))


@pytest.mark.parametrize(
    ("argv", "verbosity", "prompt"),
    [
        (["run", "tests"], "text", "run tests"),
        (["run", "-v", "tests"], "v", "run tests"),
        (["-vv", "explain"], "vv", "explain"),
        (["explain", "--", "-v", "--model"], "text", "explain -v --model"),
    ],
)
def test_verbosity_is_picked_out_of_task_words(
    argv: list[str], verbosity: str, prompt: str
) -> None:
    args = parse_args(argv)
    assert isinstance(args, Args)
    assert args.verbosity == verbosity
    assert args.prompt == prompt


def test_options_anywhere_and_equals_form() -> None:
    args = parse_args(["fix", "--model=opus", "bug", "--debug"])
    assert args == Args(debug=True, model="opus", task=("fix", "bug"))


@pytest.mark.parametrize(
    "model", ["haiku", "sonnet", "claude-sonnet-4-5", "claude-3-5-haiku-latest"]
)
def test_models_by_alias_or_full_id(model: str) -> None:
    args = parse_args(["--model", model, "go"])
    assert isinstance(args, Args)
    assert args.model == model


def test_plan_from_stdin_and_schema_versions() -> None:
    assert parse_args(["--pipeline", "-"]) == Args(pipeline=Path("-"))
    assert parse_args(["--print-schema"]) == Args(print_schema="v2")
    assert parse_args(["--print-schema", "v1"]) == Args(print_schema="v1")


def test_pipeline_example() -> None:
    args = parse_args(["--pipeline", ".agent/pipeline.yml", "--model", "opus"])
    assert args == Args(model="opus", pipeline=Path(".agent/pipeline.yml"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pipeline", "p.yml", "do", "it"], "task words cannot be combined with --pipeline"),
        (["--model", "gpt-4", "x"], "--model 'gpt-4' is not a model"),
        (["--model", "Claude-Opus", "x"], "--model 'Claude-Opus' is not a model"),
        (["", " "], "the prompt is empty"),
        (["--model"], "--model needs a value"),
        (["--pipline", "p.yml"], "did you mean --pipeline?"),
        (["-x", "go"], "put it after --"),
        (["--dry-run"], "--dry-run needs --pipeline"),
        (["--pipeline", "p.yml", "-vv"], "set verbosity in the plan"),
        (["-v"], "-v/-vv need a prompt"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("?", r"\?").replace("(", r"\(")):
        parse_args(argv)


def test_usage_error_exit_code_and_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--pipeline", "p.yml", "do", "it"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("claude-runner: error: task words cannot be combined")
    assert captured.err.count("\n") == 1


def test_help_lists_every_environment_variable_and_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, _, _ in ENV_VARS:
        assert name in out
    for code in ("0 ", "1 ", "2 ", "128+N"):
        assert f"  {code}" in out


def test_version_from_a_real_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "claude_runner", "--version"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("claude-runner ")
    assert done.stderr == ""


def _runner(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "claude_runner", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )


def test_print_schema_reads_no_environment(tmp_path: Path) -> None:
    # A bad variable concerns a run, not printing the schema.
    child = _runner(["--print-schema"], {"ENABLE_DIND": "maybe", "HOME": str(tmp_path)})
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert json.loads(out)["$schema"]


def test_plan_from_stdin(tmp_path: Path) -> None:
    plan = b"version: v1\nstages:\n  - id: s\n    tasks:\n      - {id: t, prompt: hi}\n"
    env = {"HOME": str(tmp_path), "WORKSPACE_DIR": str(tmp_path / "ws")}
    child = _runner(["--pipeline", "-", "--dry-run"], env)
    out, err = child.communicate(plan, timeout=30)
    assert child.returncode == 0, err
    doc = json.loads(out)
    assert doc["plan"] == "<stdin>"
    assert doc["stages"][0]["tasks"][0]["prompt"] == {"text": "hi"}


def test_a_relative_plan_path_that_is_missing_says_where_it_looked(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "WORKSPACE_DIR": str(tmp_path / "ws")}
    child = _runner(["--pipeline", "plan.yaml", "--dry-run"], env)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 2
    message = err.decode()
    assert message.count("\n") == 2  # the head line and the one problem
    assert f"{tmp_path / 'ws' / 'plan.yaml'}: plan file not found" in message
    assert "a relative --pipeline path is read from" in message
    assert "SOURCE_WORKSPACE_DIR" in message


def test_an_empty_prompt_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([""]) == 2
    assert "the prompt is empty" in capsys.readouterr().err
