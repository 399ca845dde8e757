"""The event contract: keys of every event type are pinned; renaming one is a schema
change (bump SCHEMA_VERSION and the README)."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

from claude_runner.pipeline.events import (
    EVENT_KEYS,
    SCHEMA_VERSION,
    EventWriter,
    PlanStart,
    TaskOutput,
)
from claude_runner.pipeline.result import TaskResult, pipeline_result
from claude_runner.redact import Redactor

ENVELOPE = ("type", "ts", "schema_version", "plan_run_id")
TASK = ("stage_id", "task_id")

PINNED = {
    "pipeline_event.plan_start": (
        *ENVELOPE, "plan_path", "workspace", "run_dir", "stage_count", "task_count", "version",
        "rehearsal", "max_concurrency", "budget_usd", "workspace_methods",
    ),
    "pipeline_event.stage_start": (*ENVELOPE, "stage_id", "mode", "max_parallel", "task_count"),
    "pipeline_event.task_start": (
        *ENVELOPE, *TASK, "model", "workspace_mode", "workspace", "log", "workspace_method",
        "read_only", "attempt", "instance_of",
    ),
    "pipeline_event.task_retry": (
        *ENVELOPE, *TASK, "attempt", "kind", "delay_s", "reason",
    ),
    "pipeline_event.task_check": (
        *ENVELOPE, *TASK, "attempt", "exit_code", "duration_s", "passed", "log",
    ),
    "pipeline_event.task_session_bind": (*ENVELOPE, *TASK, "session_id"),
    "pipeline_event.task_output": (*ENVELOPE, *TASK, "message", "raw"),
    "pipeline_event.task_finish": (
        *ENVELOPE, *TASK, "status", "failure_kind", "exit_code", "signal", "is_error", "reason",
        "duration_s", "session_id", "branch", "patch", "changed_files", "secrets_in_changes",
        "attempts", "cost_usd",
    ),
    "pipeline_event.stage_finish": (*ENVELOPE, "stage_id", "status", "duration_s", "counts"),
    "pipeline_event.plan_finish": (*ENVELOPE, "status", "duration_s", "counts"),
}  # fmt: skip

RESULT_KEYS = (
    "type", "ts", "schema_version", "plan_run_id", "status", "exit_code", "run_dir",
    "counts", "totals", "tasks", "notes",
)  # fmt: skip
TASK_RESULT_KEYS = (
    "stage_id", "task_id", "model", "workspace_mode", "status", "failure_kind", "exit_code",
    "signal", "is_error", "reason", "duration_s", "session_id", "result", "result_truncated",
    "result_subtype", "api_error_status", "num_turns", "total_cost_usd", "usage", "workspace",
    "log", "stderr_log", "config_dir", "branch", "patch", "changed_files",
    "secrets_in_changes", "workspace_method", "read_only", "attempts", "checks", "output",
    "cost_estimated", "instance_of", "item", "needs", "notes",
)  # fmt: skip
# What v1 consumers were promised: these keys stay (new ones may be added).
V1_TASK_FINISH = (
    "status", "exit_code", "signal", "is_error", "reason", "duration_s", "session_id",
    "branch", "patch", "changed_files",
)  # fmt: skip


def test_v1_keys_are_all_still_there() -> None:
    assert set(V1_TASK_FINISH) <= set(PINNED["pipeline_event.task_finish"])
    assert {"model", "workspace_mode", "workspace", "log"} <= set(
        PINNED["pipeline_event.task_start"]
    )


def test_event_keys_are_pinned() -> None:
    assert SCHEMA_VERSION == 1
    assert EVENT_KEYS == PINNED


def test_serialised_event_starts_with_the_envelope() -> None:
    body = PlanStart(
        plan_run_id="r", plan_path="p", workspace="w", run_dir="d", stage_count=1, task_count=2
    ).to_dict()
    assert tuple(body) == PINNED["pipeline_event.plan_start"]
    assert body["type"] == "pipeline_event.plan_start"
    assert body["ts"].endswith("Z")


def test_pipeline_result_keys_are_pinned() -> None:
    res = TaskResult(stage_id="s", task_id="t", model=None, workspace_mode="shared")
    final = pipeline_result(
        plan_run_id="r", run_dir="d", results=[res], duration_s=1.0, cancelled=False, notes=[]
    )
    assert tuple(final) == RESULT_KEYS
    assert tuple(final["tasks"][0]) == TASK_RESULT_KEYS
    assert tuple(final["totals"]) == (
        "total_cost_usd",
        "usage",
        "num_turns",
        "duration_s",
        "task_duration_s",
    )


def test_result_text_is_bounded() -> None:
    res = TaskResult(stage_id="s", task_id="t", model=None, workspace_mode="shared")
    res.take_result_message({"type": "result", "result": "x" * 100_000, "is_error": False})
    assert res.result is not None
    assert len(res.result) == 16 * 1024
    assert res.result_truncated


def test_writer_emits_whole_lines_from_many_threads_and_masks_secrets(tmp_path: Path) -> None:
    out = io.StringIO()
    writer = EventWriter(
        out, tmp_path / "events.jsonl", Redactor(["sk-hidden-1234"]), warn=lambda _: None
    )

    def burst(n: int) -> None:
        for i in range(200):
            writer.emit(
                TaskOutput(
                    plan_run_id="r",
                    stage_id="s",
                    task_id=f"{n}",
                    message=None,
                    raw=f"{i} sk-hidden-1234 " + "y" * 5000,
                )
            )

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    writer.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1600
    assert all(json.loads(line)["raw"].split()[1] == "***" for line in lines)
    assert (tmp_path / "events.jsonl").read_text() == out.getvalue()


def test_a_token_after_a_newline_is_masked_once_json_encoded(tmp_path: Path) -> None:
    # JSON writes the newline as \n: no word boundary is left before the token.
    token = "ghp_" + "Q" * 36
    out = io.StringIO()
    writer = EventWriter(out, tmp_path / "events.jsonl", Redactor([]), warn=lambda _: None)
    message = {"type": "user", "content": [{"type": "tool_result", "content": f"x\n{token}\n"}]}
    writer.emit(TaskOutput(plan_run_id="r", stage_id="s", task_id="t", message=message, raw=None))
    writer.close()
    for text in (out.getvalue(), (tmp_path / "events.jsonl").read_text()):
        assert "Q" * 20 not in text
        assert json.loads(text)["message"]["content"][0]["content"] == "x\n***\n"
