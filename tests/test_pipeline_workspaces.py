"""Task workspaces through the executor with the real CLI: overlay and copy give the same
preserved work, snapshot_ro is read-only by mount, a refused overlay falls back to the
copy with a note, a task beside a shared writer gets a copy, and a killed runner's mounts
are gone (its watchman unmounts them; a mount the watchman could not undo goes at the
next start)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc, procs
from claude_runner.pipeline.context import marker_of
from claude_runner.pipeline.workspaces import ENV_VAR, has_mounts, mounts
from claude_runner.pipeline.workspaces.cleanup import current_mounts
from tests.fakeapi import FakeMessagesAPI, Hang, Text, ToolUse
from tests.runs import Events, Runner, of_type, plan_of, result_of, task, wait_for
from tests.workspaces_helpers import SCRIPT, make_repo, require_root

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.cli, pytest.mark.root]


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
        },
        on_error="continue",
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
        outcomes = {
            t["task_id"]: (t["status"], t["failure_kind"]) for t in result_of(events)["tasks"]
        }
        starts = _starts(events)
        expected = "overlay" if method == "auto" else "copy"
        assert starts["wt"]["workspace_method"] == expected
        assert starts["ro"]["workspace_method"] == expected
        assert starts["ro"]["read_only"] == ("kernel" if method == "auto" else "checked")
        assert starts["wt"]["read_only"] is None
        assert outcomes["wt"] == ("succeeded", None)
        if method == "auto":
            # The kernel refused the root agent's chmod and write: nothing to detect.
            assert (code, outcomes["ro"]) == (0, ("succeeded", None))
        else:
            # A root agent can chmod a copy back: the check after the task sees it.
            assert (code, outcomes["ro"]) == (1, ("failed", "snapshot_modified"))
        wt = task(events, "s", "wt")
        assert wt["branch"] is not None
        patches[method] = Path(wt["patch"]).read_bytes()
        assert not has_mounts(cli.runs_root)
        if method == "auto":  # released: an empty mount point, the changes are in the branch
            assert not any(Path(wt["workspace"]).iterdir())
    assert patches["auto"] == patches["copy"]
    assert b"renamed-dir" in patches["auto"]
    tool_results = str([r["messages"] for r in fake_api.requests])
    assert "Read-only file system" in tool_results  # the root agent could not write either


def test_a_changed_gitignore_gives_the_copys_patch_too(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    """An overlay's preservation examines only the paths its upper layer lists, except
    when the ignore rules changed: then files the task never touched change status."""
    (cli.workspace / "build.log").write_text("was ignored\n")  # *.log, in the workspace only
    fake_api.on(
        "unignore", ToolUse("Bash", {"command": "rm .gitignore && echo n > new.txt"}), Text("ok")
    )
    plan = plan_of(
        {"id": "s", "tasks": [{"id": "wt", "prompt": "unignore", "workspace": "worktree"}]}
    )
    patches = {}
    for method in ("auto", "copy"):
        cli.env = {**cli.env, ENV_VAR: method}
        code, events = cli.run(plan)
        assert code == 0, result_of(events)
        wt = task(events, "s", "wt")
        assert wt["workspace_method"] == ("overlay" if method == "auto" else "copy")
        patches[method] = Path(wt["patch"]).read_bytes()
    assert b"build.log" in patches["copy"]
    assert patches["auto"] == patches["copy"]


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


def test_a_killed_runners_mounts_are_undone_by_its_watchman(
    cli: Runner, fake_api: FakeMessagesAPI, tmp_path: Path
) -> None:
    fake_api.on("wait", Hang(120))
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
        "WORKSPACE_DIR": str(cli.workspace),
        "PIPELINE_WORKSPACES_ROOT": str(cli.runs_root),
        "CLAUDE_BIN": cli.claude_bin,
        "PYTHONPATH": str(REPO / "src"),
    }
    child = proc.spawn(
        [sys.executable, "-m", "claude_runner", "--pipeline", "plan.yml"],
        cwd=cli.workspace,
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
        wait_for(lambda: not has_mounts(cli.runs_root), "the watchman to unmount", timeout=30)
    finally:
        if child.poll() is None:
            proc.stop(child, grace=1)
        for run in cli.runs_root.iterdir():
            procs.kill_marked(marker_of(run.name), prefix=True)


def test_a_mount_nobody_undid_goes_at_the_next_start(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    """As when the runner and its watchman were killed together (a container's end)."""
    fake_api.on("later", Text("done"))
    dead = cli.runs_root / "20260101T000000.000Z-dead00" / "tasks" / "s" / "t"
    layers = {d: dead / d for d in ("lower", "workspace.upper", "work", "workspace")}
    for d in layers.values():
        d.mkdir(parents=True)
    mounts.overlay(
        str(layers["workspace"]),
        [str(layers["lower"])],
        str(layers["workspace.upper"]),
        str(layers["work"]),
    )
    try:
        assert has_mounts(cli.runs_root)
        code, events = cli.run(plan_of({"id": "b", "tasks": [{"id": "z", "prompt": "later"}]}))
        assert code == 0, result_of(events)
        assert not has_mounts(cli.runs_root)
    finally:
        if has_mounts(layers["workspace"]):
            mounts.unmount(str(layers["workspace"]), detach=True)


def test_a_task_beside_a_shared_writer_gets_a_copy(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("write-shared", ToolUse("Bash", {"command": "echo w > shared.txt"}), Text("ok"))
    fake_api.on("own-work", ToolUse("Bash", {"command": "echo o > own.txt"}), Text("ok"))
    plan = plan_of(
        {
            "id": "s",
            "mode": "parallel",
            "tasks": [
                {"id": "w", "prompt": "write-shared", "allow_shared_writes": True},
                {"id": "o", "prompt": "own-work", "workspace": "worktree"},
            ],
        },
        {"id": "after", "tasks": [{"id": "later", "prompt": "own-work", "workspace": "worktree"}]},
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    starts = _starts(events)
    # Beside the writer: a copy, with the reason; after it (ordered): an overlay.
    assert starts["o"]["workspace_method"] == "copy"
    assert any("writes the shared workspace" in n for n in task(events, "s", "o")["notes"])
    assert starts["later"]["workspace_method"] == "overlay"
    assert Path(task(events, "s", "o")["patch"]).read_bytes().count(b"own.txt") >= 1
    assert Path(task(events, "after", "later")["patch"]).read_bytes().count(b"own.txt") >= 1


# --- claude-pipeline clean ------------------------------------------------------------------


def _clean(*runs: Path) -> proc.Completed:
    tool = str(Path(sys.executable).parent / "claude-pipeline")
    return proc.run([tool, "clean", *map(str, runs)], timeout=60)


def test_clean_removes_a_finished_run_and_refuses_one_in_use_or_with_a_mount(
    cli: Runner, fake_api: FakeMessagesAPI, tmp_path: Path
) -> None:
    fake_api.on("look", Text("looked"))
    cli.env = {**cli.env, ENV_VAR: "copy"}  # a read-only copy: 0555 directories to remove
    plan = plan_of(
        {"id": "s", "tasks": [{"id": "ro", "prompt": "look", "workspace": "snapshot_ro"}]}
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    finished = Path(of_type(events, "plan_start")[0]["run_dir"])
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    mounted = Path(of_type(events, "plan_start")[0]["run_dir"])
    point = mounted / "tasks" / "s" / "ro" / "workspace"
    lowers = [tmp_path / "l1", tmp_path / "l2"]
    for d in lowers:
        d.mkdir()
    mounts.overlay(str(point), [str(d) for d in lowers], None, None)  # read-only
    try:
        done = _clean(finished, mounted)
        assert done.returncode == 2
        assert "has a mount in it" in done.stderr
        assert finished.exists()  # nothing is removed when one of them is refused
        assert mounted.exists()
    finally:
        mounts.unmount(str(point), detach=True)
    from claude_runner.pipeline.workspaces.cleanup import Claim  # noqa: PLC0415

    claim = Claim(mounted)  # as a live runner holds it
    try:
        done = _clean(mounted)
        assert (done.returncode, "in use by a running runner" in done.stderr) == (2, True)
    finally:
        claim.release()
    done = _clean(finished, mounted)
    assert done.returncode == 0, done.stderr
    assert not finished.exists()
    assert not mounted.exists()
    done = _clean(cli.runs_root)
    assert (done.returncode, "is not a pipeline run directory" in done.stderr) == (2, True)
