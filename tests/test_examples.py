"""Every plan in examples/ is accepted by --dry-run and rehearsed end to end with the real
CLI against the built-in stand-in model (they double as end-to-end tests of the runner):
the README's first command, in a workspace like a user's repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from tests.conftest import REPO, RunRunner

EXAMPLES = sorted((REPO / "examples").glob("*.yml"))


def _repository(tmp_path: Path) -> Path:
    """A small git repository holding the examples, as a user's checkout would."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("# A project\n\nIt does one thing.\n")
    shutil.copytree(REPO / "examples", ws / "examples")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "start"]):
        assert proc.run([*git, *args], cwd=ws).returncode == 0
    return ws


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart.yml", "migrate.yml", "guardrails.yml"}


@pytest.mark.parametrize("plan", EXAMPLES, ids=lambda p: p.name)
def test_dry_run_accepts_the_example(plan: Path, tmp_path: Path, run_runner: RunRunner) -> None:
    env = {"HOME": str(tmp_path), "WORKSPACE_DIR": str(REPO), "PATH": "/usr/bin:/bin"}
    done = run_runner(["--pipeline", str(plan), "--dry-run"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stages"]


def _rehearse(
    plan: str, tmp_path: Path, claude_env: dict[str, str], run_runner: RunRunner
) -> tuple[int, dict[str, Any], str]:
    ws = _repository(tmp_path)
    env = {
        **claude_env,
        "WORKSPACE_DIR": str(ws),
        "PIPELINE_WORKSPACES_ROOT": str(tmp_path / "runs"),
        "ANTHROPIC_API_KEY": "sk-ant-api03-this-key-must-not-be-needed-0123456789",
    }
    env.pop("ANTHROPIC_BASE_URL")  # the rehearsal brings its own stand-in
    done = run_runner(["--rehearse", "--pipeline", f"examples/{plan}"], env, timeout=600)
    assert "Traceback" not in done.stderr, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    return done.returncode, result, done.stderr


def _statuses(result: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {t["task_id"]: (t["status"], t["failure_kind"]) for t in result["tasks"]}


@pytest.mark.cli
def test_quickstart_rehearsal(
    tmp_path: Path, claude_env: dict[str, str], run_runner: RunRunner
) -> None:
    code, result, stderr = _rehearse("quickstart.yml", tmp_path, claude_env, run_runner)
    assert code == 0, result
    assert result["rehearsal"] is True
    assert _statuses(result) == {
        "planner": ("succeeded", None),
        "improve[0]": ("succeeded", None),
        "improve[1]": ("succeeded", None),
        "reviewer": ("succeeded", None),
    }
    improved = [t for t in result["tasks"] if t["instance_of"] == "improve"]
    assert [t["item"] for t in improved] == [
        "Add an example of a failing run",
        "Explain the exit codes",
    ]
    for t in improved:
        assert "SUMMARY.txt" in Path(t["patch"]).read_text()
        assert t["branch"].startswith("pipeline/")
        assert [c["passed"] for c in t["checks"]] == [True]
    assert "run succeeded" in stderr  # the plain progress lines (stderr is no terminal)


@pytest.mark.cli
def test_migrate_rehearsal(
    tmp_path: Path, claude_env: dict[str, str], run_runner: RunRunner
) -> None:
    code, result, _ = _rehearse("migrate.yml", tmp_path, claude_env, run_runner)
    assert code == 0, result
    status = _statuses(result)
    assert status["port[0]"] == status["port[1]"] == ("succeeded", None)
    # The review did not approve: the fixer ran; the summary runs whatever happened.
    assert status["fixer"] == ("succeeded", None)
    assert status["notify"] == ("succeeded", None)


@pytest.mark.cli
def test_guardrails_rehearsal(
    tmp_path: Path, claude_env: dict[str, str], run_runner: RunRunner
) -> None:
    code, result, _ = _rehearse("guardrails.yml", tmp_path, claude_env, run_runner)
    assert code == 1  # two tasks fail, on purpose
    status = _statuses(result)
    assert status["flaky"] == ("succeeded", None)
    assert status["spender"] == ("failed", "budget")
    assert status["looping"] == ("failed", "max_turns")
    flaky = next(t for t in result["tasks"] if t["task_id"] == "flaky")
    assert [a["failure_kind"] for a in flaky["attempts"]] == ["api_error", None]
    assert result["budget"]["limit_usd"] == 2


@pytest.mark.cli
def test_v1_seed_rehearsal(
    tmp_path: Path, claude_env: dict[str, str], run_runner: RunRunner
) -> None:
    code, result, _ = _rehearse("v1-seed.yml", tmp_path, claude_env, run_runner)
    assert code == 0, result
    assert result["version"] == "v1"
    assert set(_statuses(result).values()) == {("succeeded", None)}
