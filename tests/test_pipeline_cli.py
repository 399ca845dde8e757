"""The pipeline executor end to end with the real Claude Code CLI against the stand-in
Messages API: stages, parallelism, workspace modes, sessions, cost, errors, fail_fast,
continue, signals, and preserving a worktree task's work in git."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from claude_runner import proc
from tests.conftest import PublicCheckout
from tests.fakeapi import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    FakeMessagesAPI,
    Hang,
    HttpError,
    Text,
    ToolUse,
)
from tests.runs import (
    REPO,
    Events,
    Runner,
    marked_processes,
    of_type,
    plan_of,
    read_events_until,
    result_of,
    task,
    wait_for,
)

pytestmark = pytest.mark.cli


def git(cwd: Path, *args: str) -> str:
    done = proc.run(["git", *args], cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def t(tid: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"id": tid, "prompt": prompt, **extra}


def max_concurrency(events: Events, stage_id: str) -> int:
    """Tasks of a stage running at once, from the event order (a task_start is written
    after its slot is taken, its task_finish before the slot frees)."""
    running = peak = 0
    for e in events:
        if e.get("stage_id") != stage_id:
            continue
        if e["type"] == "pipeline_event.task_start":
            running += 1
            peak = max(peak, running)
        elif e["type"] == "pipeline_event.task_finish":
            running -= 1
    return peak


def test_sequential_and_parallel_stages_overlap_and_bound(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    # Every parallel task's first request is held 1.5 s: two of them must be in flight at once.
    fake_api.on("par-", Hang(1.5, Text("parallel done")))
    fake_api.on("seq-", Text("sequential done"))
    plan = plan_of(
        {"id": "seq", "tasks": [t("a", "seq-a"), t("b", "seq-b")]},
        {
            "id": "par",
            "mode": "parallel",
            "max_parallel": 2,
            "tasks": [t(f"p{i}", f"par-{i}", read_only=True) for i in range(4)],
        },
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    assert max_concurrency(events, "seq") == 1
    assert max_concurrency(events, "par") == 2
    order = [
        (e["type"].split(".")[-1], e.get("task_id")) for e in events if e.get("stage_id") == "seq"
    ]
    assert order.index(("task_finish", "a")) < order.index(("task_start", "b"))
    # Overlap in time as well: p0 and p1 both started before either finished.
    ts = {(e["type"], e.get("task_id")): e["ts"] for e in events}
    first_finish = min(ts[("pipeline_event.task_finish", p)] for p in ("p0", "p1"))
    assert max(ts[("pipeline_event.task_start", p)] for p in ("p0", "p1")) < first_finish
    res = result_of(events)
    assert res["status"] == "succeeded"
    assert [x["result"] for x in res["tasks"]] == ["sequential done"] * 2 + ["parallel done"] * 4


def test_session_binding_cost_and_usage_are_the_clis(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    fake_api.on("two turns", ToolUse("Bash", {"command": "echo hi"}), Text("finished"))
    code, events = cli.run(plan_of({"id": "s", "tasks": [t("a", "two turns")]}, verbosity="text"))
    assert code == 0
    binds = of_type(events, "task_session_bind")
    assert len(binds) == 1
    res = task(events, "s", "a")
    assert binds[0]["session_id"] == res["session_id"]
    assert len(res["session_id"]) == 36  # a UUID from the CLI's system/init line
    assert res["num_turns"] == 2
    assert res["usage"]["input_tokens"] >= 2 * INPUT_TOKENS
    assert res["usage"]["output_tokens"] >= 2 * OUTPUT_TOKENS
    assert res["total_cost_usd"] > 0
    totals = result_of(events)["totals"]
    assert totals["total_cost_usd"] == pytest.approx(res["total_cost_usd"])
    assert totals["usage"]["input_tokens"] == res["usage"]["input_tokens"]
    # The session is stored in the task's own CLAUDE_CONFIG_DIR, under its cwd.
    config = Path(res["config_dir"])
    assert config == Path(result_of(events)["run_dir"]) / "config" / "slot-0"
    assert list(config.glob(f"projects/*/{res['session_id']}.jsonl"))
    assert of_type(events, "task_output") == []  # text verbosity forwards nothing


def test_api_error_fails_the_task(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("boom", HttpError(500, "api_error", "overloaded"))
    code, events = cli.run(plan_of({"id": "s", "tasks": [t("a", "boom")]}))
    res = task(events, "s", "a")
    assert code == 1
    assert (res["status"], res["exit_code"], res["is_error"]) == ("failed", 1, True)
    assert res["reason"].startswith("the CLI reported an error")
    assert res["session_id"] is not None


def test_fail_fast_cancels_a_hanging_task(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("wait", Hang(120))
    fake_api.on("boom", Hang(1.0, HttpError(500, "api_error", "overloaded")))
    plan = plan_of(
        {
            "id": "s",
            "mode": "parallel",
            "workspace": "worktree",
            "tasks": [t("hang", "wait"), t("fail", "boom")],
        },
        {"id": "after", "tasks": [t("never", "never runs")]},
        on_error="fail_fast",
    )
    code, events = cli.run(plan)
    assert code == 1
    assert task(events, "s", "fail")["status"] == "failed"
    hang = task(events, "s", "hang")
    assert hang["status"] == "cancelled"
    assert hang["reason"] == "fail_fast: task s/fail failed"
    assert task(events, "after", "never")["status"] == "skipped"
    assert marked_processes(result_of(events)["plan_run_id"]) == []
    assert not any("never runs" in json.dumps(r) for r in fake_api.requests)


def test_continue_runs_everything(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("boom", HttpError(500, "api_error", "overloaded"))
    plan = plan_of(
        {"id": "s", "tasks": [t("bad", "boom"), t("good", "fine")]},
        {"id": "next", "tasks": [t("also", "fine too")]},
        on_error="continue",
    )
    code, events = cli.run(plan)
    statuses = [r["status"] for r in result_of(events)["tasks"]]
    assert code == 1
    assert statuses == ["failed", "succeeded", "succeeded"]


@pytest.fixture
def repo(cli: Runner) -> Path:
    ws = cli.workspace
    git(ws, "init", "-q", "-b", "main")
    (ws / ".gitignore").write_text("ignored.txt\n")
    (ws / "tracked.txt").write_text("original\n")
    (ws / "gone.txt").write_text("to be deleted\n")
    git(ws, "add", "-A")
    git(ws, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    (ws / "untracked.txt").write_text("untracked\n")
    (ws / "ignored.txt").write_text("ignored\n")
    return ws


def test_workspace_modes_and_worktree_work_preserved(
    cli: Runner, fake_api: FakeMessagesAPI, repo: Path
) -> None:
    fake_api.on(
        "shared-write", ToolUse("Bash", {"command": "echo from-shared > shared.txt"}), Text("ok")
    )
    change = (
        "echo changed > tracked.txt && rm gone.txt && echo new > new.txt"
        " && printf '\\0\\1' > blob.bin"
    )
    fake_api.on("wt-change", ToolUse("Bash", {"command": change}), Text("changed"))
    fake_api.on("wt-nothing", Text("nothing to do"))
    fake_api.on("ro-look", ToolUse("Bash", {"command": "ls"}), Text("looked"))
    status_before = git(repo, "status", "--porcelain", "--untracked-files=all")
    index_before = (repo / ".git" / "index").read_bytes()
    # Copies stay after the run for this test to look into; the same work through
    # overlays (released at the task's end) is tests/test_pipeline_workspaces.py's.
    cli.env = {**cli.env, "PIPELINE_WORKSPACE_METHOD": "copy"}
    plan = plan_of(
        {"id": "one", "tasks": [t("sh", "shared-write")]},
        {
            "id": "two",
            "mode": "parallel",
            "tasks": [
                t("wt", "wt-change", workspace="worktree"),
                t("idle", "wt-nothing", workspace="worktree"),
                t("ro", "ro-look", workspace="snapshot_ro"),
            ],
        },
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    run_id = result_of(events)["plan_run_id"]
    # shared: ran in the workspace itself.
    assert task(events, "one", "sh")["workspace"] == str(repo)
    assert (repo / "shared.txt").read_text() == "from-shared\n"
    # worktree: a copy with earlier stages' changes, untracked and ignored files.
    wt = task(events, "two", "wt")
    copy = Path(wt["workspace"])
    assert copy == Path(result_of(events)["run_dir"]) / "tasks" / "two" / "wt" / "workspace"
    assert (copy / "shared.txt").read_text() == "from-shared\n"
    assert (copy / "untracked.txt").exists()
    assert (copy / "ignored.txt").exists()
    assert (copy / "new.txt").exists()
    assert not (repo / "new.txt").exists()
    assert (repo / "tracked.txt").read_text() == "original\n"
    # ... preserved: branch in the workspace repo, patch, count; checkout untouched.
    branch = f"pipeline/{run_id}/two/wt"
    assert wt["branch"] == branch
    assert wt["changed_files"] == 4
    names = git(repo, "diff", "--name-status", f"{branch}^", branch).split("\n")
    assert sorted(n for n in names if n) == sorted(
        ["A\tblob.bin", "D\tgone.txt", "A\tnew.txt", "M\ttracked.txt"]
    )
    assert git(repo, "show", f"{branch}:tracked.txt") == "changed\n"
    # The parent is the workspace as the task found it: HEAD + uncommitted files.
    start = f"{branch}^"
    assert git(repo, "rev-parse", f"{start}^") == git(repo, "rev-parse", "HEAD")
    assert git(repo, "show", f"{start}:shared.txt") == "from-shared\n"
    assert git(repo, "show", f"{start}:untracked.txt") == "untracked\n"
    assert "ignored.txt" not in git(repo, "ls-tree", "-r", "--name-only", branch)
    # The workspace's checkout, index and HEAD are untouched.
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    status_after = git(repo, "status", "--porcelain", "--untracked-files=all")
    assert sorted(status_after.splitlines()) == sorted(
        [*status_before.splitlines(), "?? shared.txt"]
    )
    assert (repo / ".git" / "index").read_bytes() == index_before
    patch = Path(wt["patch"])
    assert patch == Path(result_of(events)["run_dir"]) / "tasks" / "two" / "wt" / "changes.patch"
    check = tempfile.mkdtemp()
    try:
        git(repo, "worktree", "add", "-q", "--detach", check, start)
        git(Path(check), "apply", "--index", str(patch))
        assert git(Path(check), "write-tree") == git(repo, "rev-parse", f"{branch}^{{tree}}")
    finally:
        git(repo, "worktree", "remove", "--force", check)
    finish = next(e for e in of_type(events, "task_finish") if e["task_id"] == "wt")
    assert (finish["branch"], finish["patch"], finish["changed_files"]) == (
        branch,
        wt["patch"],
        4,
    )
    # worktree without changes: no branch, no patch.
    idle = task(events, "two", "idle")
    assert (idle["branch"], idle["patch"], idle["changed_files"]) == (None, None, 0)
    # snapshot_ro: directories 0555, files 0444.
    ro = Path(task(events, "two", "ro")["workspace"])
    assert stat.S_IMODE(ro.stat().st_mode) == 0o555
    assert stat.S_IMODE((ro / "tracked.txt").stat().st_mode) == 0o444
    assert stat.S_IMODE((ro / ".git" / "objects").stat().st_mode) == 0o555


@pytest.fixture
def unprivileged() -> Iterator[tuple[int, int, Path]]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    name = f"crt{os.getpid()}"
    home = Path(tempfile.mkdtemp(prefix="crt-home-"))
    done = proc.run(["useradd", "--no-create-home", "--home-dir", str(home), name])
    assert done.returncode == 0, done.stderr
    try:
        import pwd  # noqa: PLC0415

        entry = pwd.getpwnam(name)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        yield entry.pw_uid, entry.pw_gid, home
    finally:
        proc.run(["userdel", name])
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.root
def test_snapshot_ro_refuses_writes_of_a_non_root_cli(
    cli: Runner,
    fake_api: FakeMessagesAPI,
    unprivileged: tuple[int, int, Path],
    tmp_path: Path,
    public_checkout: PublicCheckout,
) -> None:
    uid, gid, home = unprivileged
    # The runner stays root; only the CLI runs as the new user (as in the image, where
    # everything runs as the non-root user). Runs live in a directory it can traverse.
    runs = Path(tempfile.mkdtemp(prefix="crt-runs-"))
    runs.chmod(0o755)
    cli.runs_root = runs
    wrapper = tmp_path / "claude-as-user"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'chown -R {uid}:{gid} "$CLAUDE_CONFIG_DIR"\n'
        f"export HOME={home}\n"
        "unset IS_SANDBOX\n"
        f"exec setpriv --reuid={uid} --regid={gid} --clear-groups -- "
        f'{public_checkout.claude_bin} "$@"\n'
    )
    wrapper.chmod(0o755)
    cli.claude_bin = str(wrapper)
    # The copy's file modes are what this test is about (a read-only overlay refuses
    # every write whatever the modes: tests/test_pipeline_workspaces.py).
    cli.env = {**cli.env, "PIPELINE_WORKSPACE_METHOD": "copy"}
    fake_api.on(
        "try-write",
        ToolUse("Bash", {"command": "id -u; touch blocked.txt; echo > tracked.txt; echo rc=$?"}),
        Text("tried"),
    )
    (cli.workspace / "tracked.txt").write_text("keep\n")
    try:
        code, events = cli.run(
            plan_of({"id": "s", "tasks": [t("ro", "try-write", workspace="snapshot_ro")]})
        )
        assert code == 0, result_of(events)
        copy = Path(task(events, "s", "ro")["workspace"])
        assert not (copy / "blocked.txt").exists()
        assert (copy / "tracked.txt").read_text() == "keep\n"
        tool_results = json.dumps(fake_api.requests[-1]["messages"][-1])
        assert str(uid) in tool_results
        assert "Permission denied" in tool_results
        assert "rc=1" in tool_results or "rc=2" in tool_results
    finally:
        proc.run(["chmod", "-R", "u+w", str(runs)])
        shutil.rmtree(runs, ignore_errors=True)


def _runner_env(cli: Runner, tmp_path: Path) -> dict[str, str]:
    env = dict(cli.env)
    env.update(
        {
            "WORKSPACE_DIR": str(tmp_path / "workspace"),
            "SOURCE_WORKSPACE_DIR": str(cli.workspace),
            "PIPELINE_WORKSPACES_ROOT": str(cli.runs_root),
            "PYTHONPATH": str(REPO / "src"),
        }
    )
    return env


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_through_the_cli(
    cli: Runner, fake_api: FakeMessagesAPI, tmp_path: Path, signum: int, code: int
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
        "      - {id: y, prompt: wait y}\n"
        "  - id: b\n"
        "    tasks:\n"
        "      - {id: z, prompt: later}\n"
    )
    child = proc.spawn(
        [sys.executable, "-m", "claude_runner", "--pipeline", "plan.yml"],
        cwd=REPO,
        env=_runner_env(cli, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    events: Events = []
    eof = threading.Event()
    threading.Thread(target=read_events_until, args=(child, eof, events), daemon=True).start()
    try:
        wait_for(
            lambda: len(fake_api.requests) >= 2 or child.poll() is not None,
            "both CLIs to wait on the API",
        )
        assert child.poll() is None, child.communicate()
        child.send_signal(signum)
        assert child.wait(timeout=60) == code
    finally:
        if child.poll() is None:
            proc.stop(child, grace=1)
    wait_for(eof.is_set, "the end of the runner's stdout")
    assert events[-1]["type"] == "pipeline_result"
    assert [r["status"] for r in result_of(events)["tasks"]] == [
        "cancelled",
        "cancelled",
        "skipped",
    ]
    assert {e["task_id"] for e in of_type(events, "task_finish")} == {"x", "y", "z"}
    assert [e["stage_id"] for e in of_type(events, "stage_finish")] == ["a", "b"]
    assert len(of_type(events, "plan_finish")) == 1
    assert marked_processes(result_of(events)["plan_run_id"]) == []
    assert [p.pid for p in psutil.process_iter() if _below(p, child.pid)] == []


def _below(p: psutil.Process, pid: int) -> bool:
    try:
        return any(a.pid == pid for a in p.parents())
    except psutil.NoSuchProcess:
        return False


def test_vv_forwards_every_stream_json_line_and_prompt_files_are_read_at_task_start(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    prompt = cli.workspace / "next.md"
    fake_api.on(
        "write the prompt",
        ToolUse("Write", {"file_path": str(prompt), "content": "second task from a file"}),
        Text("written"),
    )
    fake_api.on("second task from a file", Text("read it"))
    plan = plan_of(
        {"id": "one", "tasks": [t("w", "write the prompt")]},
        {"id": "two", "tasks": [{"id": "r", "prompt_file": "next.md"}]},
        verbosity="vv",
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    assert task(events, "two", "r")["result"] == "read it"
    kinds = [
        (e["message"]["type"], e["message"].get("subtype"))
        for e in of_type(events, "task_output")
        if e["task_id"] == "w"
    ]
    assert kinds[0] == ("system", "init")
    assert kinds[-1] == ("result", "success")
    assert ("assistant", None) in kinds
    assert ("user", None) in kinds  # the Write tool's result
    log_lines = Path(task(events, "one", "w")["log"]).read_text().splitlines()
    forwarded = [e for e in of_type(events, "task_output") if e["task_id"] == "w"]
    assert len(log_lines) == len(forwarded)


@pytest.mark.parametrize(("prompts", "code"), [(["fine"], 0), (["fine", "boom"], 1)])
def test_exit_code_and_stdout_through_the_cli(
    cli: Runner, fake_api: FakeMessagesAPI, run_runner: Any, prompts: list[str], code: int
) -> None:
    key = cli.env["ANTHROPIC_API_KEY"]
    fake_api.on("boom", HttpError(500, "api_error", "overloaded"))
    tasks = "".join(f"      - {{id: t{i}, prompt: {p}}}\n" for i, p in enumerate(prompts))
    (cli.workspace / "plan.yml").write_text(
        f"version: v1\ndefaults: {{on_error: continue}}\nstages:\n  - id: s\n    tasks:\n{tasks}"
    )
    done = run_runner(["--pipeline", "plan.yml"], _runner_env(cli, cli.tmp))
    assert done.returncode == code, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]  # nothing but JSON
    assert events[0]["type"] == "pipeline_event.plan_start"
    assert events[-1]["type"] == "pipeline_result"
    assert events[-1]["exit_code"] == code
    assert key not in done.stdout + done.stderr
    run_dir = Path(events[-1]["run_dir"])
    assert json.loads((run_dir / "result.json").read_text()) == events[-1]
    assert key not in (run_dir / "events.jsonl").read_text()


def test_secrets_an_agent_writes_into_its_changes_are_reported(
    cli: Runner, fake_api: FakeMessagesAPI, repo: Path
) -> None:
    fake_api.on(
        "leak-it",
        ToolUse("Bash", {"command": 'echo "key=$ANTHROPIC_API_KEY" > config.env'}),
        Text("wrote it"),
    )
    code, events = cli.run(plan_of({"id": "s", "tasks": [t("w", "leak-it", workspace="worktree")]}))
    assert code == 0, result_of(events)
    res = task(events, "s", "w")
    # The user's content stays as the agent wrote it, but not silently.
    assert cli.env["ANTHROPIC_API_KEY"] in Path(res["patch"]).read_text()
    assert res["secrets_in_changes"] == ["ANTHROPIC_API_KEY"]
    finish = next(e for e in of_type(events, "task_finish") if e["task_id"] == "w")
    assert finish["secrets_in_changes"] == ["ANTHROPIC_API_KEY"]
    assert any("contain the value of ANTHROPIC_API_KEY" in n for n in res["notes"])


@pytest.mark.root
def test_a_non_root_agent_that_chmods_a_snapshot_is_caught(
    cli: Runner,
    fake_api: FakeMessagesAPI,
    unprivileged: tuple[int, int, Path],
    tmp_path: Path,
    public_checkout: PublicCheckout,
) -> None:
    uid, gid, home = unprivileged
    runs = Path(tempfile.mkdtemp(prefix="crt-runs-"))
    runs.chmod(0o755)
    cli.runs_root = runs
    wrapper = tmp_path / "claude-as-user"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'chown -R {uid}:{gid} "$CLAUDE_CONFIG_DIR"\n'
        f"export HOME={home}\n"
        "unset IS_SANDBOX\n"
        f"exec setpriv --reuid={uid} --regid={gid} --clear-groups -- "
        f'{public_checkout.claude_bin} "$@"\n'
    )
    wrapper.chmod(0o755)
    cli.claude_bin = str(wrapper)
    # The agent owns its files, as in the image where runner and agent are one user
    # (the copy keeps the owner of the source).
    (cli.workspace / "kept.txt").write_text("x\n")
    proc.run(["chown", "-R", f"{uid}:{gid}", str(cli.workspace)])
    cli.env = {**cli.env, "PIPELINE_WORKSPACE_METHOD": "copy"}  # the checked guarantee
    fake_api.on(
        "sneak",
        ToolUse("Bash", {"command": "chmod u+w . && echo z > new2.txt; echo rc=$?"}),
        Text("sneaked"),
    )
    try:
        code, events = cli.run(
            plan_of({"id": "s", "tasks": [t("ro", "sneak", workspace="snapshot_ro")]})
        )
        res = task(events, "s", "ro")
        assert "rc=0" in fake_api_tool_output(fake_api)  # the write itself succeeded
        assert code == 1
        assert (res["status"], res["failure_kind"]) == ("failed", "snapshot_modified")
        # Exactly what the agent changed: the directory's mode and the new file.
        assert res["reason"].startswith("the read-only snapshot was modified (., new2.txt)")
        assert (Path(res["workspace"]) / "new2.txt").read_text() == "z\n"
    finally:
        proc.run(["chmod", "-R", "u+w", str(runs)])
        shutil.rmtree(runs, ignore_errors=True)


def fake_api_tool_output(fake_api: FakeMessagesAPI) -> str:
    return json.dumps(fake_api.requests[-1]["messages"][-1])


def test_a_wrong_workspace_method_is_one_line_and_runs_nothing(
    cli: Runner, run_runner: Any
) -> None:
    (cli.workspace / "plan.yml").write_text(
        "version: v1\nstages:\n  - id: s\n    tasks:\n"
        "      - {id: t, prompt: hi, workspace: worktree}\n"
    )
    env = {**_runner_env(cli, cli.tmp), "PIPELINE_WORKSPACE_METHOD": "bogus"}
    done = run_runner(["--pipeline", "plan.yml"], env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "claude-runner: error: PIPELINE_WORKSPACE_METHOD='bogus' is not one of "
        "auto, overlay, reflink, copy"
    )
    assert "Traceback" not in done.stderr
    assert not any(cli.runs_root.glob("*/run.json"))  # no run was started
