"""The stage loop's thread asks for a short scheduler slice; agents do not inherit it."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from claude_runner import sched
from claude_runner.pipeline.executor import run_pipeline
from claude_runner.plan.models import Plan, resolve
from claude_runner.runtime import Runtime
from tests import fake_agent

T = TypeVar("T")


def slice_of(stat_path: str) -> int | None:
    for line in Path(stat_path).read_text().splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    return None


def in_thread(work: Callable[[], T]) -> T:
    box: list[T] = []
    thread = threading.Thread(target=lambda: box.append(work()))
    thread.start()
    thread.join()
    return box[0]


@pytest.fixture
def eevdf() -> None:
    if slice_of("/proc/thread-self/sched") is None:
        pytest.skip("this kernel shows no se.slice (no EEVDF custom slices before 6.12)")


@pytest.mark.usefixtures("eevdf")
def test_the_calling_thread_gets_the_short_slice_and_its_children_do_not() -> None:
    def work() -> tuple[bool, int | None, int | None]:
        accepted = sched.short_slice_for_this_thread()
        mine = slice_of("/proc/thread-self/sched")
        child = subprocess.Popen(["sleep", "5"])
        try:
            theirs = slice_of(f"/proc/{child.pid}/sched")
        finally:
            child.kill()
            child.wait()
        return accepted, mine, theirs

    accepted, mine, theirs = in_thread(work)
    assert accepted
    assert mine == sched.SLICE_NS
    assert theirs is not None
    assert theirs != sched.SLICE_NS


@pytest.mark.usefixtures("eevdf")
def test_a_pipeline_run_uses_it_for_its_loop(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    plan = resolve(
        Plan.model_validate(
            {"version": "v1", "stages": [{"id": "s", "tasks": [{"id": "t", "prompt": "ok"}]}]}
        )
    )

    def work() -> tuple[int, int | None]:
        with (tmp_path / "events.jsonl").open("w") as out:
            env = {**os.environ, "PIPELINE_WORKSPACES_ROOT": str(tmp_path / "runs")}
            runtime = Runtime.from_env(env, claude_bin=fake_agent.install(tmp_path))
            code = run_pipeline(
                plan, runtime, workspace=tmp_path / "ws", plan_path=Path("plan.yml"), out=out
            )
        return code, slice_of("/proc/thread-self/sched")

    before = in_thread(lambda: slice_of("/proc/thread-self/sched"))
    code, after = in_thread(work)
    assert code == 0, (tmp_path / "events.jsonl").read_text()
    assert before != sched.SLICE_NS
    assert after == sched.SLICE_NS
    assert (
        json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])["status"]
        == "succeeded"
    )


def test_a_niced_thread_is_left_alone() -> None:
    def work() -> tuple[bool, int]:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)
        return sched.short_slice_for_this_thread(), os.getpriority(os.PRIO_PROCESS, 0)

    accepted, nice = in_thread(work)
    assert nice == 5  # kept: the call never lowers or resets it
    assert accepted or slice_of("/proc/thread-self/sched") is None
