"""Preservation through the executor with the real Claude Code CLI: the agent itself
(a Bash tool call scripted from the stand-in API) plants the attacks and makes the
awkward changes, and the task's branch and patch must come out right."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from tests.fakeapi import FakeMessagesAPI, Text, ToolUse
from tests.runs import Runner, plan_of, result_of, task

pytestmark = pytest.mark.cli

_CLEAN = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def _env() -> dict[str, str]:
    env = {**os.environ, **_CLEAN, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def git(cwd: Path, *args: str) -> str:
    """The tests' git; in a poisoned workspace only commands that run nothing."""
    done = proc.run(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=cwd, env=_env())
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


@pytest.fixture
def cli(tmp_path: Path, claude_bin: str, claude_env: dict[str, str]) -> Runner:
    r = Runner(tmp_path)
    r.claude_bin = claude_bin
    r.env = claude_env
    ws = r.workspace
    git(ws, "init", "-q", "-b", "main")
    (ws / "tracked.txt").write_text("original\n")
    (ws / "data.bin").write_bytes(bytes(range(256)))
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "base")
    return r


def t(tid: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "prompt": prompt, **extra}


def bash(command: str) -> ToolUse:
    return ToolUse("Bash", {"command": command})


def test_hooks_and_textconv_planted_by_an_agent_never_run(
    cli: Runner, fake_api: FakeMessagesAPI, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    evil = f"touch {marker}; sleep 40"
    plant = " && ".join(
        [
            "mkdir -p .git/hooks",
            *(
                f"printf '#!/bin/sh\\n{evil}\\n' > .git/hooks/{hook} && chmod +x .git/hooks/{hook}"
                for hook in ("reference-transaction", "post-index-change", "post-commit")
            ),
            f"git config core.fsmonitor '{evil}'",
            f"git config diff.x.textconv '{evil}; od -c'",
            f"git config filter.x.clean '{evil}; cat'",
            "git config filter.x.required true",
            f"git config diff.external '{evil}'",
            f"git config --global core.fsmonitor '{evil}'",
            "echo '*.bin diff=x filter=x' > .gitattributes",
        ]
    )
    fake_api.on("plant", bash(plant), Text("planted"))
    fake_api.on(
        "work", bash("printf '\\0\\1\\2 changed' > data.bin && echo new > new.txt"), Text("done")
    )
    plan = plan_of(
        {"id": "one", "tasks": [t("plant", "plant")]},
        {"id": "two", "tasks": [t("work", "work", workspace="worktree")]},
    )
    code, events = cli.run(plan)
    assert not marker.exists()
    assert code == 0, result_of(events)
    res = task(events, "two", "work")
    assert res["status"] == "succeeded"
    branch = res["branch"]
    assert branch == f"pipeline/{result_of(events)['plan_run_id']}/two/work"
    ws = cli.workspace
    # The patch is git's binary patch, not textconv output, and applies to the start.
    # (Checked without running git in the poisoned workspace: its objects are read.)
    patch = Path(res["patch"]).read_bytes()
    assert b"GIT binary patch" in patch
    check = tmp_path / "check"
    check.mkdir()
    for name in git(ws, "ls-tree", "--name-only", f"{branch}^").split():
        blob = proc.run_bytes(["git", "cat-file", "blob", f"{branch}^:{name}"], cwd=ws, env=_env())
        (check / name).write_bytes(blob.stdout)
    env = {**_env(), "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    done = proc.run(["git", "apply", "--binary", res["patch"]], cwd=check, env=env)
    assert done.returncode == 0, done.stderr
    assert (check / "data.bin").read_bytes() == b"\0\1\2 changed"
    assert (check / "new.txt").read_text() == "new\n"
    assert not marker.exists()


def test_a_nested_repository_and_its_sibling_are_preserved(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    change = (
        "mkdir empty && git -C empty init -q"
        " && mkdir full && git -C full init -q && echo f > full/f.txt"
        " && git -C full -c user.name=a -c user.email=a@a add -A"
        " && git -C full -c user.name=a -c user.email=a@a commit -qm nested"
        " && echo w > w.txt"
    )
    fake_api.on("nest", bash(change), Text("nested"))
    code, events = cli.run(plan_of({"id": "s", "tasks": [t("n", "nest", workspace="worktree")]}))
    assert code == 0, result_of(events)
    res = task(events, "s", "n")
    assert res["status"] == "succeeded"
    assert res["changed_files"] == 2
    ws = cli.workspace
    listing = git(ws, "ls-tree", "-r", res["branch"])
    assert "160000" not in listing  # never a gitlink
    assert sorted(git(ws, "ls-tree", "-r", "--name-only", res["branch"]).split()) == [
        "data.bin",
        "full/f.txt",
        "tracked.txt",
        "w.txt",
    ]


def test_ids_that_are_not_ref_names_get_branches(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("touch", bash("echo x > x.txt"), Text("touched"))
    plan = plan_of(
        {
            "id": "a.lock",
            "mode": "parallel",
            "tasks": [t("a..b", "touch"), t("x.", "touch")],
            "workspace": "worktree",
        }
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    run_id = result_of(events)["plan_run_id"]
    branches = {task(events, "a.lock", tid)["branch"] for tid in ("a..b", "x.")}
    assert branches == {
        f"pipeline/{run_id}/a%2Elock/a%2E%2Eb",
        f"pipeline/{run_id}/a%2Elock/x%2E",
    }
    for branch in branches:
        assert git(cli.workspace, "show", f"{branch}:x.txt") == "x\n"


def test_changes_that_cannot_all_be_preserved_fail_the_task(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    fake_api.on("odd", bash("mkdir .GIT && echo x > .GIT/x && echo w > w.txt"), Text("done"))
    code, events = cli.run(plan_of({"id": "s", "tasks": [t("odd", "odd", workspace="worktree")]}))
    assert code == 1
    res = task(events, "s", "odd")
    assert res["status"] == "failed"
    assert res["failure_kind"] == "preserve_failed"
    assert res["reason"].startswith("the task's changes could not all be preserved: 1 path(s)")
    assert ".GIT/x: git cannot store this name" in res["reason"]
    # What could be kept is kept and reported.
    assert git(cli.workspace, "show", f"{res['branch']}:w.txt") == "w\n"


def test_a_workspace_that_is_not_a_repository_still_gets_a_patch(
    cli: Runner, fake_api: FakeMessagesAPI, tmp_path: Path
) -> None:
    shutil.rmtree(cli.workspace / ".git")
    fake_api.on("edit", bash("echo changed > tracked.txt && echo n > n.txt"), Text("edited"))
    code, events = cli.run(plan_of({"id": "s", "tasks": [t("e", "edit", workspace="worktree")]}))
    assert code == 0, result_of(events)
    res = task(events, "s", "e")
    assert (res["branch"], res["changed_files"]) == (None, 2)
    assert any("not the top of a git repository" in n for n in res["notes"])
    check = tmp_path / "check"
    check.mkdir()
    (check / "tracked.txt").write_text("original\n")
    (check / "data.bin").write_bytes(bytes(range(256)))
    env = {**_env(), "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    done = proc.run(["git", "apply", res["patch"]], cwd=check, env=env)
    assert done.returncode == 0, done.stderr
    assert (check / "tracked.txt").read_text() == "changed\n"
    assert (check / "n.txt").read_text() == "n\n"
