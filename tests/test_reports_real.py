"""The reports, ``logs`` and the activity tracker on a run directory made by the real
executor driving the real pinned CLI against the stand-in API (a tool call, a worktree
task, an API failure): whatever layout the executor writes, the reports find its files."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from junitparser import JUnitXml

from claude_runner.plan.resolved import Check
from claude_runner.progress import StreamActivity
from claude_runner.reports.rundir import read_run
from tests.fakeapi import FakeMessagesAPI, HttpError, Text, ToolUse
from tests.runs import fast_retries, tuned
from tests.test_pipeline_faults import Runner, plan_of
from tests.test_reports import pipeline_bin, run_pipeline_cmd

pytestmark = pytest.mark.cli


@pytest.fixture
def real_run(
    tmp_path: Path, claude_bin: str, claude_env: dict[str, str], fake_api: FakeMessagesAPI
) -> Path:
    fake_api.on(
        "marker-real-tool",
        ToolUse("Bash", {"command": "echo hello-from-bash"}),
        Text("listed the files"),
    )
    fake_api.on("marker-real-fail", HttpError(500, "api_error", "internal boom"))
    runner = Runner(tmp_path)
    runner.claude_bin = claude_bin
    runner.env = claude_env
    plan = plan_of(
        {"id": "analyze", "tasks": [{"id": "inspect", "prompt": "marker-real-tool"}]},
        {
            "id": "build",
            "mode": "parallel",
            "tasks": [
                {"id": "broken", "prompt": "marker-real-fail", "read_only": True},
                {"id": "plain", "prompt": "just answer", "workspace": "worktree"},
            ],
        },
        on_error="continue",
    )
    code, events = runner.run(plan)
    assert code == 1
    return Path(events[0]["run_dir"])


def test_reports_of_a_real_run(real_run: Path, tmp_path: Path) -> None:
    view = read_run(real_run)
    assert view.complete
    assert [(t.key, t.status) for t in view.tasks] == [
        ("analyze/inspect", "succeeded"),
        ("build/broken", "failed"),
        ("build/plain", "succeeded"),
    ]
    assert all(t.log is not None and t.log.is_file() for t in view.tasks)
    out = tmp_path / "report.xml"
    done = run_pipeline_cmd("report", str(real_run), "--format", "junit", "-o", str(out))
    assert done.returncode == 0, done.stderr
    xml = JUnitXml.fromfile(str(out))
    assert (xml.tests, xml.failures) == (3, 1)
    done = run_pipeline_cmd("report", str(real_run), "--format", "html")
    assert done.returncode == 0
    html = done.stdout
    assert "echo hello-from-bash" in html
    assert "hello-from-bash" in html
    assert "internal boom" in html
    assert "claude-" in html  # the model the CLI reported, per model
    done = run_pipeline_cmd("report", str(real_run), "--format", "markdown")
    assert "| `build/broken` | ❌ failed |" in done.stdout


def test_logs_and_activity_of_a_real_task(real_run: Path) -> None:
    done = run_pipeline_cmd(
        "logs", str(real_run), "analyze/inspect", env={**os.environ, "NO_COLOR": "1"}
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("· session started: model ")
    assert "▶ Bash  echo hello-from-bash" in lines
    assert "  ◀ hello-from-bash" in lines
    assert lines[-2].startswith("■ result (success, 2 turns, $")
    log = read_run(real_run).find("analyze/inspect").log
    assert log is not None
    tracker = StreamActivity()
    stream = log.read_bytes().splitlines(keepends=True)
    changes = [s for s in map(tracker.feed, stream[:-1]) if s is not None]
    assert changes == [("Bash", 1, None), (None, 1, None)]
    result = json.loads(stream[-1])
    assert tracker.result(result) == (None, 2, result["total_cost_usd"])
    assert os.access(pipeline_bin(), os.X_OK)


@pytest.fixture
def retried_run(
    tmp_path: Path, claude_bin: str, claude_env: dict[str, str], fake_api: FakeMessagesAPI
) -> Path:
    """A v2 run: a verify gate that fails once then passes in the same session, and a
    task the API overloads on every attempt (retried once)."""
    fake_api.on("marker-real-gate", Text("gated work done"))
    fake_api.on("marker-real-529", HttpError(529, "overloaded_error", "overloaded"))
    runner = Runner(tmp_path)
    runner.claude_bin = claude_bin
    runner.env = claude_env
    plan = tuned(
        plan_of(
            {
                "id": "s",
                "mode": "parallel",
                "tasks": [
                    {"id": "gated", "prompt": "marker-real-gate", "read_only": True},
                    {"id": "overloaded", "prompt": "marker-real-529", "read_only": True},
                ],
            },
            on_error="continue",
        ),
        retries=fast_retries(1),
    )
    gate = Check(
        run="test -e gate-ok || { touch gate-ok; echo not yet; exit 1; }", attempts=2, timeout_s=60
    )
    stage = plan.stages[0]
    gated = dataclasses.replace(stage.tasks[0], check=gate)
    plan = dataclasses.replace(
        plan, stages=(dataclasses.replace(stage, tasks=(gated, stage.tasks[1])),)
    )
    code, events = runner.run(plan)
    assert code == 1
    return Path(events[0]["run_dir"])


def test_retries_and_checks_of_a_real_v2_run(retried_run: Path, tmp_path: Path) -> None:
    view = read_run(retried_run)
    gated, overloaded = view.find("gated"), view.find("overloaded")
    assert (gated.status, [c.passed for c in gated.checks]) == ("succeeded", [False, True])
    assert all(c.log is not None and c.log.is_file() for c in gated.checks)
    assert (overloaded.status, overloaded.failure_kind) == ("failed", "api_error")
    assert [a.status for a in overloaded.attempts] == ["failed", "failed"]
    first = overloaded.attempts[0]
    assert first.log == retried_run / "tasks/s/overloaded/attempt-1/agent.log"
    assert first.start is not None
    assert first.end is not None
    out = tmp_path / "report.xml"
    done = run_pipeline_cmd("report", str(retried_run), "--format", "junit", "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.count("<rerunFailure ") == 1
    assert '<failure message="' in text
    assert 'type="api_error"' in text
    done = run_pipeline_cmd(
        "logs", str(retried_run), "s/overloaded", env={**os.environ, "NO_COLOR": "1"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.index("── attempt 1") < done.stdout.index("── attempt 2")
    assert done.stdout.count("■ error result") == 2
