"""Executor behaviour under faults the real CLI cannot be made to produce on demand:
crash by signal, hang, flood, invalid JSON lines, no result message, overlong lines.
The agent is tests/fake_agent.py (fault injection only; features are proven with the
real CLI in test_pipeline_cli.py)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from claude_runner import proc, procs
from claude_runner.pipeline import scheduler
from claude_runner.pipeline import task as task_module
from claude_runner.pipeline.clirun import CliRun
from claude_runner.pipeline.executor import run_pipeline
from claude_runner.plan.models import Plan, resolve
from tests.runs import (
    REPO,
    Events,
    Runner,
    alive,
    marked_processes,
    of_type,
    plan_of,
    read_events_until,
    result_of,
    stage,
    task,
    wait_for,
)

__all__ = [  # what other test modules import from here
    "REPO",
    "Events",
    "Runner",
    "marked_processes",
    "of_type",
    "plan_of",
    "read_events_until",
    "result_of",
    "task",
    "wait_for",
]


def test_crash_by_signal_fails_with_the_signal_name(runner: Runner) -> None:
    code, events = runner.run(plan_of(stage("s", "crash")))
    t = task(events, "s", "t0")
    assert code == 1
    assert (t["status"], t["exit_code"], t["signal"]) == ("failed", -9, "SIGKILL")
    assert "no result message" in t["reason"]
    assert "SIGKILL" in t["reason"]
    assert t["session_id"] is not None  # bound from init before the crash


def test_no_result_message_is_a_failure_even_with_exit_0(runner: Runner) -> None:
    code, events = runner.run(plan_of(stage("s", "noresult")))
    t = task(events, "s", "t0")
    assert code == 1
    assert (t["status"], t["exit_code"]) == ("failed", 0)
    assert t["reason"].startswith("no result message from the CLI (exit code 0)")


def test_invalid_json_lines_are_logged_and_forwarded_raw_at_vv(runner: Runner) -> None:
    code, events = runner.run(plan_of(stage("s", "invalid", verbosity="vv")))
    assert code == 0
    raws = [e["raw"] for e in of_type(events, "task_output") if e["raw"] is not None]
    assert raws == ['{"type": "result", broken', "not json at all", '{"type":"system"']
    messages = [e["message"]["type"] for e in of_type(events, "task_output") if e["message"]]
    assert messages == ["system", "result"]
    log = Path(task(events, "s", "t0")["log"]).read_text()
    assert "not json at all\n" in log


def test_verbosity_v_forwards_only_the_result_and_text_nothing(runner: Runner) -> None:
    _, events = runner.run(plan_of(stage("a", "invalid", verbosity="v"), stage("b", "ok")))
    outputs = of_type(events, "task_output")
    assert [(e["stage_id"], e["message"]["type"]) for e in outputs] == [("a", "result")]
    assert len(of_type(events, "task_session_bind")) == 2  # at every verbosity


def test_overlong_line_is_logged_whole_but_not_parsed(runner: Runner) -> None:
    size = 64 * 1024 * 1024 + 4096
    code, events = runner.run(plan_of(stage("s", f"bigline {size}")))
    t = task(events, "s", "t0")
    assert code == 0  # the result line after it is still found
    assert t["notes"] == [f"an output line of {size - 1} bytes exceeded 64 MiB: logged, not parsed"]
    lines = Path(t["log"]).read_bytes().split(b"\n")
    assert len(lines[1]) == size - 1
    assert lines[1].endswith(b'"}]}}')


def test_a_64_mib_line_is_handled(runner: Runner) -> None:
    size = 64 * 1024 * 1024 + 1  # 64 MiB and its newline
    code, events = runner.run(plan_of(stage("s", f"bigline {size}", verbosity="vv")))
    t = task(events, "s", "t0")
    assert code == 0
    assert t["notes"] == []
    big = [e for e in of_type(events, "task_output") if e["message"] and "message" in e["message"]]
    assert len(big[0]["message"]["message"]["content"][0]["text"]) > 64 * 1024 * 1024 - 100


def test_continue_runs_every_task_after_failures(runner: Runner) -> None:
    code, events = runner.run(
        plan_of(stage("a", "crash", "ok"), stage("b", "noresult", "ok"), on_error="continue")
    )
    statuses = [(t["stage_id"], t["task_id"], t["status"]) for t in result_of(events)["tasks"]]
    assert statuses == [
        ("a", "t0", "failed"),
        ("a", "t1", "succeeded"),
        ("b", "t0", "failed"),
        ("b", "t1", "succeeded"),
    ]
    assert code == 1
    assert result_of(events)["status"] == "failed"


def test_fail_fast_cancels_a_hanging_task_and_skips_the_rest(runner: Runner) -> None:
    plan = plan_of(
        stage(
            "a",
            "hang",
            "crash",
            "ok",
            "ok",
            mode="parallel",
            max_parallel=2,
            workspace="worktree",
        ),
        stage("b", "ok"),
        on_error="fail_fast",
    )
    # The hang starts its grandchild, then the crash fails the stage.
    pid_file = runner.tmp / "grandchild.pid"
    plan["stages"][0]["tasks"][0]["prompt"] = f"hang {pid_file}"
    plan["stages"][0]["tasks"][1]["prompt"] = f"crash {pid_file}"
    code, events = runner.run(plan)
    assert code == 1
    assert task(events, "a", "t0")["status"] == "cancelled"
    assert task(events, "a", "t0")["reason"] == "fail_fast: task a/t1 failed"
    assert task(events, "a", "t1")["status"] == "failed"
    assert [task(events, s, t)["status"] for s, t in [("a", "t2"), ("a", "t3"), ("b", "t0")]] == [
        "skipped"
    ] * 3
    finishes = {(e["stage_id"], e["task_id"]) for e in of_type(events, "task_finish")}
    assert finishes == {("a", "t0"), ("a", "t1"), ("a", "t2"), ("a", "t3"), ("b", "t0")}
    assert [e["stage_id"] for e in of_type(events, "stage_finish")] == ["a", "b"]
    assert len(of_type(events, "task_start")) == 2
    run_id = result_of(events)["plan_run_id"]
    assert marked_processes(run_id) == []
    grandchild = int(pid_file.read_text())
    assert not alive(grandchild)


def test_a_cancel_before_the_run_skips_everything_but_reports_it(runner: Runner) -> None:
    cancel = threading.Event()
    cancel.set()
    code, events = runner.run(plan_of(stage("a", "ok", "ok"), stage("b", "ok")), cancel)
    assert code == 1
    assert result_of(events)["status"] == "cancelled"
    assert [t["status"] for t in result_of(events)["tasks"]] == ["skipped"] * 3
    assert of_type(events, "task_start") == []
    assert len(of_type(events, "task_finish")) == 3


def test_a_cancel_while_the_cli_starts_stops_it_once_started(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI starts in a helper thread: a signal to the runner that arrives meanwhile
    # finds no CLI to stop yet, and the CLI must be stopped as soon as it has started.
    cancel = threading.Event()

    class StartedAfterTheCancel(CliRun):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            attempt = kwargs["hooks"].on_session.__self__._at
            cancel.set()
            assert attempt.stop.wait(30), "the scheduler did not stop the attempt"
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(task_module, "CliRun", StartedAfterTheCancel)
    code, events = runner.run(plan_of(stage("a", "sleep 30")), cancel)
    t = task(events, "a", "t0")
    assert code == 1
    assert t["status"] == "cancelled"
    # Stopped before its result (SIGINT: killed by it, or exit 1 when it came while
    # Python was starting); unstopped, it would have slept and then succeeded.
    assert (t["num_turns"], t["exit_code"] != 0) == (None, True), t["exit_code"]


def test_long_prompt_goes_through_stdin(runner: Runner) -> None:
    prompt = "ok " + "x" * 300_000  # beyond what one argv string may hold
    code, events = runner.run(plan_of(stage("s", prompt)))
    t = task(events, "s", "t0")
    assert code == 0
    assert t["result"] == f"done: prompt of {len(prompt)} characters"


def test_secrets_are_masked_in_log_events_and_result(runner: Runner) -> None:
    secret = runner.env["ANTHROPIC_API_KEY"]
    code, events = runner.run(plan_of(stage("s", "secret", verbosity="vv")))
    assert code == 0
    t = task(events, "s", "t0")
    run_dir = Path(result_of(events)["run_dir"])
    for path in [Path(t["log"]), run_dir / "events.jsonl", run_dir / "result.json"]:
        text = path.read_text()
        assert secret not in text
        assert "***" in text
    assert t["result"] == "key=***"


def test_run_directory_layout(runner: Runner) -> None:
    code, events = runner.run(plan_of(stage("s", "ok", workspace="worktree")))
    assert code == 0
    run_dir = Path(result_of(events)["run_dir"])
    assert run_dir.parent == runner.runs_root
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config",
        "events.jsonl",
        "git",  # the runner's own repository (worktree tasks)
        "plan.json",
        "result.json",
        "run.json",
        "tasks",
    ]
    task_dir = run_dir / "tasks" / "s" / "t0"
    overlay = result_of(events)["tasks"][0]["workspace_method"] == "overlay"
    assert sorted(p.name for p in task_dir.iterdir()) == [
        "agent.log",
        "result.json",
        "stderr.log",
        "workspace",
        *(["workspace.upper"] if overlay else []),  # the overlay's changes
    ]
    assert json.loads((task_dir / "result.json").read_text()) == result_of(events)["tasks"][0]
    run = json.loads((run_dir / "run.json").read_text())
    assert (run["plan_run_id"], run["version"]) == (result_of(events)["plan_run_id"], "v1")
    assert json.loads((run_dir / "plan.json").read_text())["stages"][0]["id"] == "s"
    assert json.loads((run_dir / "result.json").read_text()) == result_of(events)
    jsonl = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert jsonl == events
    config = run_dir / "config" / "slot-0"
    assert result_of(events)["tasks"][0]["config_dir"] == str(config)
    assert (config.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_run_finishes_every_event_and_leaves_no_process(
    runner: Runner, signum: int, code: int
) -> None:
    plan = plan_of(
        stage("a", "hang", "hang", mode="parallel", workspace="worktree"),
        stage("b", "ok"),
    )
    child = runner.spawn_driver(plan)
    events: Events = []
    eof = threading.Event()
    threading.Thread(target=read_events_until, args=(child, eof, events), daemon=True).start()
    wait_for(lambda: len(of_type(events, "task_session_bind")) == 2, "both hanging tasks to start")
    child.send_signal(signum)
    assert child.wait(timeout=60) == code
    wait_for(eof.is_set, "the end of the runner's stdout")
    assert [t["status"] for t in result_of(events)["tasks"]] == [
        "cancelled",
        "cancelled",
        "skipped",
    ]
    assert result_of(events)["status"] == "cancelled"
    assert len(of_type(events, "task_finish")) == 3
    assert len(of_type(events, "stage_finish")) == 2
    assert len(of_type(events, "plan_finish")) == 1
    assert marked_processes(result_of(events)["plan_run_id"]) == []
    assert not [p for p in psutil.process_iter() if _descends_from(p, child.pid)]


def _descends_from(p: psutil.Process, pid: int) -> bool:
    try:
        return any(a.pid == pid for a in p.parents())
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_a_1_gb_flood_keeps_the_runner_small(runner: Runner) -> None:
    child = runner.spawn_driver(plan_of(stage("s", f"flood {1024**3}")))
    out, err = child.communicate(timeout=240)
    events = [json.loads(x) for x in out.splitlines()]
    assert child.returncode == 0, err
    t = task(events, "s", "t0")
    assert Path(t["log"]).stat().st_size > 1024**3
    maxrss_kb = int(err.decode().rsplit("maxrss_kb=", 1)[1])
    assert maxrss_kb < 100 * 1024, f"runner peak RSS {maxrss_kb} KiB"


def test_prompt_file_is_read_at_task_start_and_a_missing_one_fails_the_task(
    runner: Runner,
) -> None:
    writer = {"id": "w", "tasks": [{"id": "mk", "prompt": "ok"}]}
    reader = {
        "id": "r",
        "tasks": [{"id": "good", "prompt_file": "p.md"}, {"id": "bad", "prompt_file": "nope.md"}],
    }
    (runner.workspace / "p.md").write_text("sleep 0 " + "y" * 10)
    code, events = runner.run(plan_of(writer, reader, on_error="continue"))
    assert code == 1
    assert task(events, "r", "good")["result"] == "done: prompt of 18 characters"
    bad = task(events, "r", "bad")
    assert bad["status"] == "failed"
    assert "nope.md" in bad["reason"]
    assert "prompt file not found" in bad["reason"]


def test_each_task_gets_its_own_config_dir_seeded_from_the_users(runner: Runner) -> None:
    del runner.env["ANTHROPIC_API_KEY"]  # so the OAuth login is the credential in effect
    home = Path(runner.env["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text('{"model": "opus"}')
    (home / ".claude" / ".credentials.json").write_text('{"token": "t"}')
    user_global = {"hasCompletedOnboarding": True, "userID": "u1", "projects": {"/x": {}}}
    (home / ".claude.json").write_text(json.dumps(user_global))
    plan = plan_of(
        stage("s", "config", "config", mode="parallel", workspace="worktree"), verbosity="vv"
    )
    code, events = runner.run(plan)
    assert code == 0
    seen = [
        e["message"]
        for e in of_type(events, "task_output")
        if e["message"] and "config_dir" in e["message"]
    ]
    assert len({m["config_dir"] for m in seen}) == 2
    for m in seen:
        assert m["files"]["settings.json"] == '{"model": "opus"}'
        assert m["files"][".credentials.json"] == '{"token": "t"}'
        assert json.loads(m["files"][".claude.json"]) == {
            "hasCompletedOnboarding": True,
            "userID": "u1",
        }
        # the copy of the credentials is removed once the run is over
        assert not (Path(m["config_dir"]) / ".credentials.json").exists()
        assert (Path(m["config_dir"]) / "settings.json").exists()


def test_claude_config_dir_of_the_user_is_the_source_when_set(runner: Runner) -> None:
    mine = runner.tmp / "my-config"
    mine.mkdir()
    (mine / "settings.json").write_text("{}")
    (mine / ".claude.json").write_text('{"oauthAccount": {"a": 1}}')
    runner.env["CLAUDE_CONFIG_DIR"] = str(mine)
    code, events = runner.run(plan_of(stage("s", "config"), verbosity="vv"))
    assert code == 0
    seen = next(
        e["message"]
        for e in of_type(events, "task_output")
        if e["message"] and "files" in e["message"]
    )
    assert seen["config_dir"] != str(mine)
    assert json.loads(seen["files"][".claude.json"]) == {
        "oauthAccount": {"a": 1},
        "hasCompletedOnboarding": True,
    }
    assert seen["files"]["settings.json"] == "{}"


def test_a_leftover_process_holding_the_output_open_does_not_hang_the_task(
    runner: Runner,
) -> None:
    code, events = runner.run(plan_of(stage("s", "daemon", "ok")))
    assert code == 0
    assert task(events, "s", "t0")["notes"] == [
        "the CLI exited but a process it started kept its output open: killed"
    ]
    assert task(events, "s", "t1")["status"] == "succeeded"
    assert marked_processes(result_of(events)["plan_run_id"]) == []


def test_an_unmarked_leftover_holding_the_output_is_found_by_the_pipe(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler, "PIPE_DRAIN", 0.2)
    pid_file = runner.tmp / "daemon.pid"
    code, events = runner.run(plan_of(stage("s", f"daemon-unmarked {pid_file}", "ok")))
    assert code == 0
    assert task(events, "s", "t0")["notes"] == [
        "the CLI exited but a process it started kept its output open: killed"
    ]
    assert not alive(int(pid_file.read_text()))


def test_a_pipe_that_cannot_be_freed_is_given_up_not_waited_for(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler, "PIPE_DRAIN", 0.2)
    monkeypatch.setattr(procs, "holding_pipe", lambda inode: [])  # as if not ours to kill
    pid_file = runner.tmp / "daemon.pid"
    try:
        code, events = runner.run(plan_of(stage("s", f"daemon-unmarked {pid_file}", "ok")))
        assert alive(int(pid_file.read_text()))
    finally:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert code == 0
    t0 = task(events, "s", "t0")
    assert t0["status"] == "succeeded"
    assert t0["notes"] == [
        "the CLI exited but a process it started kept its output open: killed",
        "the output was still held open after the kill: stopped reading it",
    ]
    assert task(events, "s", "t1")["status"] == "succeeded"


def test_exits_are_found_without_pidfds(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    # Kernels before 5.3 and some seccomp profiles have no pidfd_open: the loop polls.
    monkeypatch.setattr(scheduler, "_pidfd", lambda pid: None)
    monkeypatch.setattr(scheduler, "PIPE_DRAIN", 0.2)
    tasks = ("ok", "sleep 1", "daemon", "error", "ok")
    plan = plan_of(
        stage("s", *tasks, mode="parallel", workspace="snapshot_ro"), on_error="continue"
    )
    code, events = runner.run(plan)
    assert code == 1
    statuses = [task(events, "s", f"t{i}")["status"] for i in range(5)]
    assert statuses == ["succeeded", "succeeded", "succeeded", "failed", "succeeded"]
    assert task(events, "s", "t3")["exit_code"] == 1
    assert marked_processes(result_of(events)["plan_run_id"]) == []


def test_an_internal_error_in_the_loop_still_stops_every_agent(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: scheduler.Scheduler, *args: object) -> None:
        raise RuntimeError("a bug in the loop")

    monkeypatch.setattr(scheduler.Scheduler, "_read", broken)
    pid_file = runner.tmp / "grandchild.pid"
    out = io.StringIO()
    fds_before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(RuntimeError, match="a bug in the loop"):
        run_pipeline(
            resolve(Plan.model_validate(plan_of(stage("s", f"hang {pid_file}")))),
            runner.runtime(),
            workspace=runner.workspace,
            plan_path=Path("plan.yml"),
            out=out,
        )
    assert sorted(os.listdir("/proc/self/fd")) == fds_before  # pipes, logs, selector closed
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert result_of(events)["status"] == "failed"
    assert marked_processes(result_of(events)["plan_run_id"]) == []
    if pid_file.exists():  # the agent may have been stopped before it wrote it
        assert not alive(int(pid_file.read_text()))


def test_worktree_of_a_subdirectory_of_a_repository_gets_no_branch(runner: Runner) -> None:
    """Not the top of a repository: no branch there (a patch against the task's starting
    copy when it changed something; this one changes nothing) and a note why."""
    top = runner.workspace
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        done = proc.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=top)
        assert done.returncode == 0, done.stderr
    runner.workspace = top / "sub"
    runner.workspace.mkdir()
    code, events = runner.run(plan_of(stage("s", "ok", workspace="worktree")))
    assert code == 0
    t = task(events, "s", "t0")
    assert (t["branch"], t["patch"], t["changed_files"]) == (None, None, 0)
    assert any("not the top of a git repository" in n for n in t["notes"])
    assert proc.run(["git", "branch", "--list", "pipeline/*"], cwd=top).stdout == ""


def test_uncommitted_workspace_changes_form_the_branch_base(runner: Runner) -> None:
    ws = runner.workspace
    a = ws / "a.txt"
    a.write_text("original\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    # The worst case, made certain with explicit times: the file was committed, the index
    # written, and the file rewritten at the same size, all within one second (S).
    second = (int(time.time()) - 100) * 1_000_000_000
    os.utime(a, ns=(second, second + 100_000_000))
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        assert proc.run([*git, *args], cwd=ws).returncode == 0
    index = ws / ".git" / "index"
    os.utime(index, ns=(second, second + 500_000_000))
    a.write_text("ORIGINAL\n")  # same size, not staged
    os.utime(a, ns=(second, second + 900_000_000))
    status = proc.run(["git", "--no-optional-locks", "status", "--porcelain"], cwd=ws)
    assert status.stdout == " M a.txt\n"
    code, events = runner.run(plan_of(stage("s", "write new.txt", workspace="worktree")))
    assert code == 0
    t = task(events, "s", "t0")
    assert t["changed_files"] == 1
    show = proc.run(["git", "show", f"{t['branch']}^:a.txt"], cwd=ws)
    assert show.stdout == "ORIGINAL\n"
    diff = proc.run(["git", "diff", "--name-only", f"{t['branch']}^", t["branch"]], cwd=ws)
    assert diff.stdout == "new.txt\n"
