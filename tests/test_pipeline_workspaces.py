"""Task workspaces through the executor with the real CLI: overlay and copy give the same
preserved work, snapshot_ro is read-only by mount, a refused overlay falls back to the
copy with a note, and a killed runner's mounts are gone at the next start.

Written against today's ``run_pipeline`` API before the executor uses
``claude_runner.pipeline.workspaces``: each test is an expected failure (strict) until
that integration lands; then the marker goes and the event field names are checked
against the final contract (``task_start.workspace_method`` / ``read_only``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from claude_runner.pipeline import orphans
from claude_runner.pipeline.task import TASK_MARKER
from claude_runner.pipeline.workspaces import ENV_VAR, has_mounts, mounts
from claude_runner.pipeline.workspaces.cleanup import current_mounts
from tests.fakeapi import FakeMessagesAPI, Hang, Text, ToolUse
from tests.test_pipeline_faults import (
    REPO,
    Events,
    Runner,
    of_type,
    plan_of,
    result_of,
    task,
    wait_for,
)
from tests.workspaces_helpers import SCRIPT, make_repo, require_root

pytestmark = [
    pytest.mark.cli,
    pytest.mark.root,
    pytest.mark.xfail(
        reason="the executor does not use pipeline.workspaces yet (issue 14 integration)",
        strict=True,
    ),
]


@pytest.fixture
def cli(tmp_path: Path, claude_bin: str, claude_env: dict[str, str]) -> Runner:
    require_root()
    r = Runner(tmp_path)
    r.claude_bin = claude_bin
    r.env = claude_env
    make_repo(r.workspace)
    return r


def _starts(events: Events) -> dict[str, dict[str, Any]]:
    return {e["task_id"]: e for e in of_type(events, "task_start")}


def _plan() -> dict[str, Any]:
    return plan_of(
        {
            "id": "s",
            "mode": "parallel",
            "tasks": [
                {"id": "wt", "prompt": "apply-the-script", "workspace": "worktree"},
                {"id": "ro", "prompt": "try-to-write", "workspace": "snapshot_ro"},
            ],
        }
    )


def test_overlay_and_copy_preserve_the_same_work(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("apply-the-script", ToolUse("Bash", {"command": SCRIPT}), Text("applied"))
    fake_api.on(
        "try-to-write",
        ToolUse("Bash", {"command": "chmod u+w . ; echo z > f ; echo rc=$?"}),
        Text("tried"),
    )
    patches: dict[str, bytes] = {}
    for method in ("auto", "copy"):
        cli.env = {**cli.env, ENV_VAR: method}
        code, events = cli.run(_plan())
        assert code == 0, result_of(events)
        starts = _starts(events)
        expected = "overlay" if method == "auto" else "copy"
        assert starts["wt"]["workspace_method"] == expected
        assert starts["ro"]["workspace_method"] == expected
        assert starts["ro"]["read_only"] == ("kernel" if method == "auto" else "checked")
        assert starts["wt"]["read_only"] is None
        wt = task(events, "s", "wt")
        assert wt["branch"] is not None
        patches[method] = Path(wt["patch"]).read_bytes()
        assert not has_mounts(cli.runs_root)
        ro_workspace = Path(task(events, "s", "ro")["workspace"])
        assert not (ro_workspace / "f").exists()
    assert patches["auto"] == patches["copy"]
    assert b"renamed-dir" in patches["auto"]
    tool_results = str([r["messages"] for r in fake_api.requests])
    assert "Read-only file system" in tool_results  # the root agent could not write either


def test_a_refused_overlay_falls_back_to_the_copy_with_a_note(
    cli: Runner, fake_api: FakeMessagesAPI, tmp_path: Path
) -> None:
    fake_api.on("apply-the-script", ToolUse("Bash", {"command": SCRIPT}), Text("applied"))
    fake_api.on("try-to-write", Text("did not try"))
    layers = tmp_path / "layers"
    for d in ("lower", "upper", "work", "merged"):
        (layers / d).mkdir(parents=True)
    mounts.overlay(
        str(layers / "merged"), [str(layers / "lower")], str(layers / "upper"), str(layers / "work")
    )
    try:
        cli.runs_root = layers / "merged" / "runs"  # an upper layer cannot live on an overlay
        code, events = cli.run(_plan())
        assert code == 0, result_of(events)
        starts = _starts(events)
        assert starts["wt"]["workspace_method"] == "copy"
        assert (starts["ro"]["workspace_method"], starts["ro"]["read_only"]) == ("copy", "checked")
        assert "overlay: refused" in str(events)
        assert task(events, "s", "wt")["branch"] is not None
    finally:
        mounts.unmount(str(layers / "merged"), detach=True)


def test_a_killed_runners_mounts_are_gone_at_the_next_start(
    cli: Runner, fake_api: FakeMessagesAPI, tmp_path: Path
) -> None:
    fake_api.on("wait", Hang(120))
    fake_api.on("later", Text("done"))
    (cli.workspace / "plan.yml").write_text(
        "version: v1\n"
        "stages:\n"
        "  - id: a\n"
        "    mode: parallel\n"
        "    workspace: worktree\n"
        "    tasks:\n"
        "      - {id: x, prompt: wait x}\n"
        "      - {id: y, prompt: wait y, workspace: snapshot_ro}\n"
    )
    env = {
        **cli.env,
        "WORKSPACE_DIR": str(tmp_path / "workspace"),
        "SOURCE_WORKSPACE_DIR": str(cli.workspace),
        "PIPELINE_WORKSPACES_ROOT": str(cli.runs_root),
        "PYTHONPATH": str(REPO / "src"),
    }
    child = proc.spawn(
        [sys.executable, "-m", "claude_runner", "--pipeline", "plan.yml"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: len(fake_api.requests) >= 2 or child.poll() is not None,
            "both CLIs to wait on the API",
        )
        assert child.poll() is None
        assert len([m for m in current_mounts() if m.point.is_relative_to(cli.runs_root)]) == 2
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            proc.stop(child, grace=1)
        # The killed runner's CLIs still wait on the API.
        for run in cli.runs_root.iterdir():
            orphans.kill_marked(TASK_MARKER, f"{run.name}/", prefix=True)
    assert has_mounts(cli.runs_root)
    code, events = cli.run(plan_of({"id": "b", "tasks": [{"id": "z", "prompt": "later"}]}))
    assert code == 0, result_of(events)
    assert not has_mounts(cli.runs_root)
