"""Rate limits: the run's concurrency comes down to what the API bears, and 429s caused by
the run's own fan-out do not use up a task's retries (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_runner.pipeline.pressure import Pressure
from tests.fakeapi import FakeMessagesAPI, Text
from tests.runs import Runner, fast_retries, of_type, plan_of, result_of, stage, task, tuned


def test_a_wave_of_429s_converges_on_what_got_through() -> None:
    p = Pressure(16)
    # 12 of 16 get 429 while 4 still run: each brings the limit to those still running.
    for still_running in range(15, 3, -1):
        p.rate_limited(still_running=min(still_running, 15))
    assert p.limit == 4


def test_successes_raise_the_limit_one_round_at_a_time_up_to_the_cap() -> None:
    p = Pressure(6)
    p.rate_limited(still_running=2)
    assert p.limit == 2
    p.succeeded()
    assert p.limit == 2  # one success of two
    p.succeeded()
    assert p.limit == 3
    for _ in range(3 + 4 + 5):
        p.succeeded()
    assert p.limit == 6  # the cap
    p.succeeded()
    assert p.limit == 6


def test_a_429_with_nothing_else_running_leaves_one() -> None:
    p = Pressure(8)
    p.rate_limited(still_running=0)
    assert p.limit == 1


def test_429s_of_the_runs_own_load_do_not_use_up_the_retries(
    runner: Runner, tmp_path: Path
) -> None:
    """Three 429s, each while other tasks run: retried although ``retries.max`` is 1.
    The limited task's first attempt runs beside three sleepers: its 429 brings the
    limit to 3, so each of its retries starts when a sleeper ends and meets the others
    still running; the last runs alone and gets through."""
    sleepers = ["sleep 1", "sleep 2", "sleep 3"]
    crowd = stage("s", f"limited {tmp_path / 'n'} 3", *sleepers, mode="parallel")
    for t in crowd["tasks"]:
        t["read_only"] = True
    plan = tuned(plan_of(crowd, on_error="continue"), retries=fast_retries(max=1))
    code, events = runner.run(plan)
    assert code == 0, [(t["task_id"], t["attempts"]) for t in result_of(events)["tasks"]]
    limited = task(events, "s", "t0")
    kinds = [a["failure_kind"] for a in limited["attempts"]]
    assert kinds == ["rate_limited", "rate_limited", "rate_limited", None]
    assert limited["status"] == "succeeded"


def test_429s_alone_use_up_the_retries(runner: Runner, tmp_path: Path) -> None:
    """Nothing else runs: the API is limiting this task, and retries.max holds."""
    alone = stage("s", f"limited {tmp_path / 'n'} 3")
    code, events = runner.run(tuned(plan_of(alone), retries=fast_retries(max=1)))
    limited = task(events, "s", "t0")
    assert code == 1
    assert [a["failure_kind"] for a in limited["attempts"]] == ["rate_limited", "rate_limited"]


@pytest.mark.cli
def test_a_wide_stage_against_an_api_bearing_one_request_finishes(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    """Six real CLIs at once against an API that bears one request at a time (answers
    slow enough for requests to meet): 429s, the concurrency brought down, retries, and
    every task succeeds with ``retries.max: 1``."""
    fake_api.limit_concurrency(1, retry_after=0)
    fake_api.on("slow", Text("done", delay=1.0))
    wide = stage("s", *(["slow"] * 6), mode="parallel")
    for t in wide["tasks"]:
        t["read_only"] = True
    code, events = cli.run(tuned(plan_of(wide), retries=fast_retries(max=1)))
    tasks = result_of(events)["tasks"]
    assert code == 0, [(t["task_id"], t["status"], t["failure_kind"]) for t in tasks]
    limited = sum(a["failure_kind"] == "rate_limited" for t in tasks for a in t["attempts"])
    assert limited >= 1
    assert fake_api.stats().rejected >= limited
    retries = of_type(events, "task_retry")
    assert len(retries) == limited
    assert {r["kind"] for r in retries} == {"rate_limited"}
