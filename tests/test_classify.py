"""classify() on recordings of the real CLI (tests/data/cli, made by the contract test)
and on the runner-side facts that no recording holds."""

from __future__ import annotations

from typing import Any

import pytest

from claude_runner.pipeline.classify import Verdict, classify
from tests.cli_cases import BY_NAME, CASES, load_recording, recorded_names


def _replay(name: str, **facts: Any) -> Verdict:
    doc = load_recording(name)
    retries = doc["api_retries"]
    return classify(
        doc["result"],
        returncode=doc["exit_code"],
        stderr_tail=doc["stderr"],
        output_required=BY_NAME[name].output_required,
        last_api_retry=retries[-1] if retries else None,
        **facts,
    )


def test_every_case_has_a_recording() -> None:
    assert recorded_names() == sorted(c.name for c in CASES), (
        "record with: CLAUDE_RUNNER_CAPTURE_CLI=1 pytest tests/test_cli_contract.py"
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recording_classifies_as_the_case_says(case: Any) -> None:
    verdict = _replay(case.name)
    assert verdict.kind == case.kind, verdict
    assert (verdict.reason == "") == (case.kind is None)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_stop_by_the_runner_before_the_result_wins(case: Any) -> None:
    assert _replay(case.name, stopped="timeout").kind == "timeout"
    assert _replay(case.name, stopped="idle_timeout").kind == "idle_timeout"
    assert _replay(case.name, stopped="cancelled").kind == "cancelled"


def test_retry_after_is_the_last_announced_retry_delay() -> None:
    doc = load_recording("retries_429")
    assert _replay("retries_429").retry_after_s == doc["api_retries"][-1]["retry_delay_ms"] / 1000
    assert _replay("retries_429").retry_after_s >= 1.0  # type: ignore[operator]
    # Without CLI retries the server's Retry-After is nowhere in the output.
    assert _replay("http_429_retry_after").retry_after_s is None
    assert _replay("retry_after_over_60s").retry_after_s is None


def test_reasons_name_the_status_and_the_cli_text() -> None:
    assert _replay("http_429").reason.startswith("rate limited (HTTP 429): API Error")
    assert _replay("no_credentials").reason == (
        "authentication failed: Not logged in · Please run /login"
    )
    assert "Reached maximum budget" in _replay("max_budget").reason
    assert (
        _replay("sigterm_while_waiting").reason == "no result message from the CLI (exit code 143)"
    )


def test_a_result_then_a_forced_stop_keeps_the_results_verdict() -> None:
    success = load_recording("success")["result"]
    assert classify(success, returncode=-9).kind is None
    assert classify(load_recording("http_529")["result"], returncode=-15).kind == "api_error"


def test_no_result_is_a_crash_whatever_the_exit() -> None:
    killed = classify(None, returncode=-9, stderr_tail="something\nbroke")
    assert killed == Verdict(
        "crash", "no result message from the CLI (killed by SIGKILL); stderr: something broke"
    )
    # A SIGINT while a request is pending may end the CLI with 0 and no result.
    assert classify(None, returncode=0).kind == "crash"
    assert (
        classify(None, returncode=None).reason == "no result message from the CLI (still running)"
    )


def test_structured_output_required_only_when_asked() -> None:
    ignored = load_recording("structured_output_ignored")["result"]
    assert classify(ignored, returncode=0).kind is None
    assert classify(ignored, returncode=0, output_required=True).kind == "output_invalid"
    given = load_recording("structured_output")["result"]
    assert classify(given, returncode=0, output_required=True).kind is None


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        ({"subtype": "success", "is_error": True, "result": "something odd"}, "agent_error"),
        ({"subtype": "success", "is_error": True, "api_error_status": 413}, "agent_error"),
        ({"subtype": "success", "is_error": True, "api_error_status": 408}, "api_error"),
        ({"subtype": "success", "is_error": True, "api_error_status": 502}, "api_error"),
        (
            {"subtype": "success", "is_error": True, "result": "OAuth token has expired"},
            "auth",
        ),
        ({"subtype": "error_from_a_newer_cli", "is_error": True}, "agent_error"),
        ({"subtype": "error_during_execution", "terminal_reason": "aborted_x"}, "crash"),
        ({"subtype": "success", "is_error": False}, None),
    ],
)
def test_results_no_recording_holds(result: dict[str, Any], kind: str | None) -> None:
    assert classify(result, returncode=1).kind == kind


def test_long_texts_are_clipped_to_one_line() -> None:
    result = {"subtype": "success", "is_error": True, "result": "line\n" * 200}
    reason = classify(result, returncode=1).reason
    assert "\n" not in reason
    assert len(reason) < 400
    assert reason.endswith("...")
