"""The result always arrives and nothing runs on: a reader closing stdout, a full disk, a
runner killed with SIGKILL, a signal during the start-up copy; ids that could break the
run layout; a read-only snapshot that was written to. Fault injection with the fake
agent (tests/fake_agent.py) and stand-in programs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc, procs
from tests.conftest import REPO
from tests.procwatch import wait_for_text, wait_gone
from tests.runs import Runner, marked_processes, plan_of, result_of, stage, task, wait_for


def _runner_process(
    runner: Runner, plan: dict[str, Any], **extra_env: str
) -> subprocess.Popen[bytes]:
    (runner.workspace / "plan.json").write_text(json.dumps(plan))
    env = {
        **runner.env,
        "PYTHONPATH": str(REPO / "src"),
        "CLAUDE_BIN": runner.claude_bin,
        "WORKSPACE_DIR": str(runner.workspace),
        "PIPELINE_WORKSPACES_ROOT": str(runner.runs_root),
        "IS_SANDBOX": "1",
        **extra_env,
    }
    return proc.spawn(
        [sys.executable, "-m", "claude_runner", "--pipeline", str(runner.workspace / "plan.json")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _only_run_dir(runner: Runner) -> Path:
    [run_dir] = list(runner.runs_root.iterdir())
    return run_dir


def test_a_reader_closing_stdout_does_not_stop_the_run(runner: Runner) -> None:
    # `claude-runner --pipeline p.yaml | head -1`
    plan = plan_of(stage("s", "sleep 1", "ok", "ok"))
    child = _runner_process(runner, plan)
    assert child.stdout is not None
    assert child.stderr is not None
    first = child.stdout.readline()
    assert json.loads(first)["type"] == "pipeline_event.plan_start"
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 0, err
    assert "Traceback" not in err
    assert err.count("stdout was closed by its reader") == 1
    run_dir = _only_run_dir(runner)
    lines = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [t["status"] for t in lines[-1]["tasks"]] == ["succeeded"] * 3
    assert lines[-1]["type"] == "pipeline_result"
    assert json.loads((run_dir / "result.json").read_text())["status"] == "succeeded"
    assert "stdout was closed by its reader" in lines[-1]["notes"][0]


@pytest.mark.root
def test_a_full_disk_still_gives_the_result_line(runner: Runner) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    runner.runs_root.mkdir()
    done = proc.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(runner.runs_root)])
    assert done.returncode == 0, done.stderr
    try:
        child = _runner_process(runner, plan_of(stage("s", f"flood {4 * 1024 * 1024}")))
        out, err = child.communicate(timeout=120)
        stderr = err.decode()
        assert child.returncode == 1, stderr
        assert "Traceback" not in stderr
        final = json.loads(out.splitlines()[-1])
        assert final["type"] == "pipeline_result"
        t = final["tasks"][0]
        assert t["status"] == "failed"
        assert "No space left on device" in t["reason"]
        assert any("result.json (the disk is full)" in n for n in final["notes"])
        assert stderr.count("result.json (the disk is full)") == 1
        run_dir = Path(final["run_dir"])
        assert not (run_dir / "result.json.tmp").exists()
    finally:
        proc.run(["umount", "-l", str(runner.runs_root)])


def test_kill_9_of_the_runner_leaves_no_agent_or_tool(runner: Runner) -> None:
    pid_file = runner.tmp / "grandchild.pid"
    hangs = [{"id": f"h{i}", "prompt": p} for i, p in enumerate([f"hang {pid_file}", "hang"])]
    child = _runner_process(
        runner, plan_of({"id": "s", "mode": "parallel", "workspace": "worktree", "tasks": hangs})
    )
    try:
        grandchild = int(wait_for_text(pid_file))
        wait_for(lambda: len(_marked(runner)) >= 4, "both agents and their tools to run")
        killed = time.monotonic()
        child.kill()
        child.wait()
        wait_for(lambda: not _marked(runner), "the agents to be gone", timeout=10)
        gone_after = time.monotonic() - killed
        assert wait_gone(grandchild)
    finally:
        proc.stop(child, grace=0.5)
    # The figure the README quotes.
    print(f"agents outlived the killed runner by {gone_after:.3f} s")


def _marked(runner: Runner) -> list[int]:
    run_dirs = list(runner.runs_root.iterdir()) if runner.runs_root.exists() else []
    return marked_processes(run_dirs[0].name) if run_dirs else []


def test_kill_9_in_single_prompt_mode_takes_the_cli_along(tmp_path: Path) -> None:
    pid_file = tmp_path / "cli.pid"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cli = bindir / "claude"
    # A CLI whose tool runs in a session of its own, as the Bash tool's do.
    cli.write_text(f"#!/bin/sh\nsetsid sh -c 'echo $$ > {pid_file}; exec sleep 300' &\nwait\n")
    cli.chmod(0o755)
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "IS_SANDBOX": "1",
        "WORKSPACE_DIR": str(tmp_path / "ws"),
        "PYTHONPATH": str(REPO / "src"),
    }
    child = proc.spawn(
        [sys.executable, "-m", "claude_runner", "do", "it"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        tool = int(wait_for_text(pid_file))
        child.kill()
        child.wait()
        assert wait_gone(tool, deadline=10)
    finally:
        proc.stop(child, grace=0.5)


def test_sigterm_during_the_start_up_copy_stops_it_at_once(tmp_path: Path) -> None:
    # A cp that takes minutes (an 8 GB file): the runner must not wait for it.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pid_file = tmp_path / "cp.pid"
    (bindir / "cp").write_text(f"#!/bin/sh\necho $$ >> {pid_file}\nexec sleep 300\n")
    (bindir / "cp").chmod(0o755)
    (bindir / "claude").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "claude").chmod(0o755)
    source = tmp_path / "source"
    for i in range(3):
        (source / f"d{i}").mkdir(parents=True)
        (source / f"d{i}" / "f").write_text("x")
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "IS_SANDBOX": "1",
        "SOURCE_WORKSPACE_DIR": str(source),
        "WORKSPACE_DIR": str(tmp_path / "ws"),
        "PYTHONPATH": str(REPO / "src"),
    }
    child = proc.spawn(
        [sys.executable, "-m", "claude_runner", "hello"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_text(pid_file)
        os.kill(child.pid, signal.SIGTERM)
        # Raises TimeoutExpired if the runner waits for the copy instead of ending.
        _, err = child.communicate(timeout=15)
    finally:
        proc.stop(child, grace=0.5)
    assert child.returncode == 143, err
    assert b"Traceback" not in err
    for pid in pid_file.read_text().split():
        assert wait_gone(int(pid))
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())


def test_no_accepted_id_breaks_the_run_layout(runner: Runner) -> None:
    def tasks(*ids: str, **extra: Any) -> list[dict[str, Any]]:
        return [{"id": i, "prompt": "ok", **extra} for i in ids]

    plan = plan_of(
        {"id": "events.jsonl", "tasks": tasks("u", "u.stderr", "u.log")},
        {"id": "result.json", "tasks": tasks("t", "t.log", "t.patch", workspace="worktree")},
        {"id": "config", "tasks": tasks("slot-0", "workspace")},
        {"id": "tasks", "tasks": tasks("result.json", "agent.log", workspace="snapshot_ro")},
    )
    code, events = runner.run(plan)
    final = result_of(events)
    assert code == 0, final
    assert [t["status"] for t in final["tasks"]] == ["succeeded"] * 10
    run_dir = Path(final["run_dir"])
    assert json.loads((run_dir / "result.json").read_text()) == final
    logs = {t["log"] for t in final["tasks"]} | {t["stderr_log"] for t in final["tasks"]}
    assert len(logs) == 20
    assert all(Path(p).is_file() for p in logs)


def test_stderr_is_masked_even_when_a_secret_is_split_across_writes(runner: Runner) -> None:
    code, events = runner.run(plan_of(stage("s", "stderr-secret")))
    assert code == 0
    log = Path(task(events, "s", "t0")["stderr_log"]).read_text()
    assert runner.env["ANTHROPIC_API_KEY"] not in log
    assert "warning: key *** rejected" in log


def test_a_write_to_a_read_only_copy_fails_the_task(runner: Runner) -> None:
    # The fake agent writes in its cwd; as root it is not stopped by the file modes, as
    # a same-user agent is not once it chmods them back.
    (runner.workspace / "kept.txt").write_text("x")
    runner.env = {**runner.env, "PIPELINE_WORKSPACE_METHOD": "copy"}  # the checked guarantee
    code, events = runner.run(
        plan_of(stage("s", "write new2.txt", "ok", workspace="snapshot_ro"), on_error="continue")
    )
    bad = task(events, "s", "t0")
    assert code == 1
    assert (bad["status"], bad["failure_kind"]) == ("failed", "snapshot_modified")
    assert "new2.txt" in bad["reason"]
    assert (Path(bad["workspace"]) / "new2.txt").exists()  # kept as evidence
    assert task(events, "s", "t1")["status"] == "succeeded"
    assert task(events, "s", "t1")["read_only"] == "checked"


def test_a_signal_goes_to_the_scanned_process_and_no_other(tmp_path: Path) -> None:
    child = proc.spawn(["sleep", "30"])
    try:
        [me] = [p for p in procs.scan() if p.pid == child.pid]
        impostor = procs.Proc(me.pid, me.ppid, me.pgid, me.sid, me.start + 1)
        # Same pid, another start time: a process that reused the number.
        assert not procs.send(impostor, signal.SIGKILL)
        assert child.poll() is None
        assert procs.send(me, signal.SIGKILL)
        assert child.wait(timeout=5) == -signal.SIGKILL
    finally:
        proc.stop(child, grace=0.5)
