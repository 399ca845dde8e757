"""The failure cases of the CLI contract: how each is provoked against the stand-in,
what the runner's classification must say, and recorded observations of the real CLI.

``tests/test_cli_contract.py`` runs every case with the pinned CLI and checks the facts;
with ``CLAUDE_RUNNER_CAPTURE_CLI=1`` it also rewrites the recordings in
``tests/data/cli/`` that ``tests/test_classify.py`` replays without a CLI. See
``docs/cli-behaviour.md`` for what they show.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_runner import proc
from claude_runner.pipeline.classify import FailureKind
from claude_runner.standin.replies import Hang, HttpError, Output, Reply, Text, ToolUse
from claude_runner.standin.server import StandinAPI
from tests.procwatch import wait_for_text

DATA = Path(__file__).parent / "data" / "cli"
SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}},
    "required": ["approved"],
}
# Result keys left out of recordings: bulky, and nothing the runner reads.
_BULKY = ("usage", "modelUsage", "model_usage_since_last_result", "subagent_stats")


@dataclass(frozen=True)
class Observed:
    """What the runner can see of one CLI run (stream-json on stdout)."""

    exit_code: int
    result: dict[str, Any] | None
    api_retries: list[dict[str, Any]]
    system: list[dict[str, Any]]  # system messages other than init and api_retry
    assistant_errors: list[str]  # the ``error`` of assistant messages that carry one
    init: dict[str, Any] | None
    stderr: str
    models: list[str]  # the model of each request the stand-in received

    def recording(self, case: Case, replace: Mapping[str, str]) -> dict[str, Any]:
        """A small JSON document of this observation (host-specific strings replaced)."""
        result = None
        if self.result is not None:
            result = {k: v for k, v in self.result.items() if k not in _BULKY}
        doc = {
            "case": case.name,
            "cli_version": self.init.get("claude_code_version") if self.init else None,
            "args": list(case.args),
            "env": dict(case.env),
            "exit_code": self.exit_code,
            "result": result,
            "api_retries": self.api_retries,
            "system": self.system,
            "assistant_errors": self.assistant_errors,
            "stderr": self.stderr,
            "models": self.models,
        }
        text = json.dumps(doc, indent=1, ensure_ascii=False)
        for old, new in replace.items():
            text = text.replace(old, new)
        loaded: dict[str, Any] = json.loads(text)
        return loaded


@dataclass(frozen=True)
class Rule:
    replies: tuple[Reply, ...]
    model: str | None = None  # only requests for a model containing this


@dataclass(frozen=True)
class Case:
    """One way the CLI ends. ``kind`` is the classification without runner facts."""

    name: str
    kind: FailureKind | None
    rules: tuple[Rule, ...] = (Rule((Text("done"),)),)
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    interrupt: signal.Signals | None = None  # sent once the CLI waits on the stand-in
    wait_file: str | None = None  # ...or once a tool has written this file
    output_required: bool = False
    check: Callable[[Observed], None] | None = None  # facts beyond the kind

    @property
    def prompt(self) -> str:
        return f"contract case {self.name}"


def _error(status: int, message: str, **headers: str) -> tuple[Rule, ...]:
    return (Rule((HttpError(status, message=message, headers=headers),)),)


# --- facts beyond the kind -------------------------------------------------------------


def _api_error(status: int | None, text: str, assistant_error: str) -> Callable[[Observed], None]:
    def check(seen: Observed) -> None:
        assert seen.exit_code == 1
        assert seen.result is not None
        assert (seen.result["subtype"], seen.result["is_error"]) == ("success", True)
        assert seen.result["api_error_status"] == status
        assert seen.result["terminal_reason"] == "api_error"
        assert text in seen.result["result"]
        assert seen.assistant_errors == [assistant_error]
        assert seen.api_retries == []

    return check


def _retries(count: int, error: str, *, min_delay_ms: int = 0) -> Callable[[Observed], None]:
    """``count`` api_retry lines for ``error``, each announcing at least ``min_delay_ms``."""

    def check(seen: Observed) -> None:
        assert [r["attempt"] for r in seen.api_retries] == list(range(1, count + 1))
        for retry in seen.api_retries:
            assert (retry["error"], retry["max_retries"]) == (error, count)
            assert retry["retry_delay_ms"] >= min_delay_ms

    return check


def _ends(subtype: str, terminal: str, error: str) -> Callable[[Observed], None]:
    def check(seen: Observed) -> None:
        assert seen.exit_code == 1
        assert seen.result is not None
        assert (seen.result["subtype"], seen.result["is_error"]) == (subtype, True)
        assert seen.result["terminal_reason"] == terminal
        assert "result" not in seen.result
        assert error in seen.result["errors"][0]

    return check


def _succeeded(seen: Observed) -> None:
    assert seen.exit_code == 0
    assert seen.result is not None
    assert (seen.result["subtype"], seen.result["is_error"]) == ("success", False)


def _structured(seen: Observed) -> None:
    _succeeded(seen)
    assert seen.result is not None
    assert seen.result["structured_output"] == {"approved": True}
    assert seen.result["result"] == '{"approved":true}'  # the value's JSON is the text
    assert seen.result["num_turns"] == 2  # the StructuredOutput call ends the run


def _structured_ignored(seen: Observed) -> None:
    _succeeded(seen)
    assert seen.result is not None
    assert "structured_output" not in seen.result  # no placeholder value either
    assert seen.result["result"] == "plain text"
    assert seen.result["num_turns"] == 2  # one reminder to call the tool, then accepted


def _no_result(code: int) -> Callable[[Observed], None]:
    def check(seen: Observed) -> None:
        assert (seen.exit_code, seen.result) == (code, None)

    return check


def _refused(text: str) -> Callable[[Observed], None]:
    def check(seen: Observed) -> None:
        assert (seen.exit_code, seen.result) == (1, None)
        assert text in seen.stderr

    return check


def _budget(seen: Observed) -> None:
    _ends("error_max_budget_usd", "budget_exhausted", "Reached maximum budget ($0.5)")(seen)
    assert seen.result is not None
    assert seen.result["total_cost_usd"] >= 8  # the cap is checked after the turn
    assert seen.result["stop_reason"] == "end_turn"  # although the turn was final


def _fallback(trigger: str, models: list[str]) -> Callable[[Observed], None]:
    def check(seen: Observed) -> None:
        _succeeded(seen)
        [switch] = [m for m in seen.system if m.get("subtype") == "model_fallback"]
        assert switch["trigger"] == trigger
        assert (switch["original_model"], switch["fallback_model"]) == (_SONNET, _HAIKU)
        assert seen.models == models

    return check


_SONNET, _HAIKU = "claude-sonnet-5-5", "claude-haiku-5-5"
_UNKNOWN = "00000000-0000-4000-8000-000000000000"
_FALLBACK = ("--model", "sonnet", "--fallback-model", "haiku")


def _no_fallback(seen: Observed) -> None:
    assert seen.system == []
    assert seen.models == [_SONNET]


def _fallback_rules(status: int) -> tuple[Rule, ...]:
    return (
        Rule((HttpError(status, message="busy"),), model="sonnet"),
        Rule((Text("from the fallback model"),)),
    )


def _resume_unknown(seen: Observed) -> None:
    assert seen.exit_code == 1
    assert seen.result is not None
    assert (seen.result["subtype"], seen.result["is_error"]) == ("error_during_execution", True)
    assert "terminal_reason" not in seen.result
    assert seen.result["errors"] == [f"No conversation found with session ID: {_UNKNOWN}"]
    assert seen.result["session_id"] == _UNKNOWN
    assert f"No conversation found with session ID: {_UNKNOWN}" in seen.stderr


def _aborted(terminal: str, *, maybe_none: bool = False) -> Callable[[Observed], None]:
    """Exit 0 and an ``error_during_execution`` result (a SIGINT while a request is
    pending sometimes leaves no result at all: it races the CLI's own abort)."""

    def check(seen: Observed) -> None:
        assert seen.exit_code == 0
        if seen.result is None and maybe_none:
            return
        assert seen.result is not None
        assert (seen.result["subtype"], seen.result["is_error"]) == (
            "error_during_execution",
            True,
        )
        assert seen.result["terminal_reason"] == terminal

    return check


CASES: tuple[Case, ...] = (
    Case("success", None, check=_succeeded),
    Case(
        "tool_then_text",
        None,
        (Rule((ToolUse("Bash", {"command": "echo hi"}), Text("done"))),),
        check=_succeeded,
    ),
    Case(
        "http_429",
        "rate_limited",
        _error(429, "rate limited"),
        check=_api_error(429, "Request rejected (429)", "rate_limit"),
    ),
    Case(
        "http_429_retry_after",
        "rate_limited",
        _error(
            429,
            "rate limited",
            **{"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"},
        ),
        check=_api_error(429, "Request rejected (429)", "rate_limit"),
    ),
    Case(
        "http_529",
        "api_error",
        _error(529, "Overloaded"),
        check=_api_error(529, "API Error: 529", "server_error"),
    ),
    Case(
        "http_500",
        "api_error",
        _error(500, "boom"),
        check=_api_error(500, "API Error: 500", "server_error"),
    ),
    Case(
        "http_503",
        "api_error",
        _error(503, "unavailable"),
        check=_api_error(503, "API Error: 503", "server_error"),
    ),
    Case(
        "http_400",
        "agent_error",
        _error(400, "bad request"),
        check=_api_error(400, "API Error: 400", "unknown"),
    ),
    Case(
        "http_404",
        "agent_error",
        _error(404, "model: claude-nonexistent"),
        check=_api_error(404, "There's an issue with the selected model", "model_not_found"),
    ),
    Case(
        "http_401",
        "auth",
        _error(401, "invalid x-api-key"),
        check=_api_error(401, "Invalid API key", "authentication_failed"),
    ),
    Case(
        "http_403",
        "auth",
        _error(403, "forbidden"),
        check=_api_error(403, "Failed to authenticate", "authentication_failed"),
    ),
    Case(
        "no_credentials",
        "auth",
        unset=("ANTHROPIC_API_KEY",),
        check=_api_error(None, "Not logged in", "authentication_failed"),
    ),
    Case(
        "stalled",
        "api_error",
        (Rule((Hang(600),)),),
        env={"API_TIMEOUT_MS": "2000"},
        check=_api_error(None, "Request timed out", "server_error"),
    ),
    Case(
        "dropped",
        "api_error",
        (Rule((Hang(0),)),),
        check=_api_error(None, "Connection dropped", "server_error"),
    ),
    Case(
        "max_turns",
        "max_turns",
        (Rule((ToolUse("Bash", {"command": "true"}), Text("never"))),),
        args=("--max-turns", "1"),
        check=_ends("error_max_turns", "max_turns", "Reached maximum number of turns (1)"),
    ),
    Case(
        "max_budget",
        "budget",
        (Rule((Text("expensive", usage={"input_tokens": 2_000_000}),)),),
        args=("--max-budget-usd", "0.5"),
        check=_budget,
    ),
    Case(
        "structured_output",
        None,
        (Rule((Output({"approved": True}),)),),
        args=("--json-schema", json.dumps(SCHEMA)),
        output_required=True,
        check=_structured,
    ),
    Case(
        "structured_output_invalid",
        "output_invalid",
        (Rule((Output({"approved": "maybe"}),)),),
        args=("--json-schema", json.dumps(SCHEMA)),
        output_required=True,
        check=_ends(
            "error_max_structured_output_retries",
            "structured_output_retry_exhausted",
            "Failed to provide valid structured output after 5 attempts",
        ),
    ),
    Case(
        "structured_output_ignored",
        "output_invalid",
        (Rule((Text("plain text"),)),),
        args=("--json-schema", json.dumps(SCHEMA)),
        output_required=True,
        check=_structured_ignored,
    ),
    Case(
        "resume_unknown",
        "agent_error",
        args=("--resume", _UNKNOWN),
        check=_resume_unknown,
    ),
    Case(
        "retries_429",
        "rate_limited",
        _error(429, "rate limited", **{"retry-after": "1"}),
        env={"CLAUDE_CODE_MAX_RETRIES": "2"},
        check=_retries(2, "rate_limit", min_delay_ms=1000),
    ),
    Case(
        "retries_529",
        "api_error",
        _error(529, "Overloaded"),
        env={"CLAUDE_CODE_MAX_RETRIES": "1"},
        check=_retries(1, "overloaded"),
    ),
    Case(
        "retries_401",
        "auth",
        _error(401, "invalid x-api-key"),
        env={"CLAUDE_CODE_MAX_RETRIES": "1"},
        check=_retries(1, "authentication_failed"),
    ),
    Case(
        "retry_after_over_60s",
        "rate_limited",
        _error(429, "rate limited", **{"retry-after": "61"}),
        env={"CLAUDE_CODE_MAX_RETRIES": "3"},
        check=_retries(0, "rate_limit"),
    ),
    Case(
        "fallback_after_500",
        None,
        _fallback_rules(500),
        args=_FALLBACK,
        check=_fallback("server_error", [_SONNET, _HAIKU]),
    ),
    Case(
        "fallback_after_529_needs_retries",
        "api_error",
        _fallback_rules(529),
        args=_FALLBACK,
        check=_no_fallback,
    ),
    Case(
        "fallback_after_three_529",
        None,
        _fallback_rules(529),
        args=_FALLBACK,
        env={"CLAUDE_CODE_MAX_RETRIES": "2"},
        check=_fallback("overloaded", [_SONNET, _SONNET, _SONNET, _HAIKU]),
    ),
    Case(
        "bad_option_value",
        "setup_failed",
        args=("--max-turns", "many"),
        check=_refused("error: option '--max-turns <turns>' argument 'many' is invalid"),
    ),
    Case(
        "missing_mcp_config",
        "setup_failed",
        args=("--mcp-config", "/nonexistent/mcp.json"),
        check=_refused("Error: Invalid MCP configuration"),
    ),
    Case(
        "missing_settings_file",
        "setup_failed",
        args=("--settings", "/nonexistent/settings.json"),
        check=_refused("Error: Settings file not found: /nonexistent/settings.json"),
    ),
    Case(
        "invalid_json_schema",
        "setup_failed",
        args=("--json-schema", '{"type": "nonsense"}'),
        check=_refused("Error: --json-schema is not a valid JSON Schema"),
    ),
    Case(
        "sigint_while_waiting",
        "crash",
        (Rule((Hang(600),)),),
        interrupt=signal.SIGINT,
        check=_aborted("aborted_streaming", maybe_none=True),
    ),
    Case(
        "sigint_in_tool",
        "crash",
        (
            Rule(
                (
                    ToolUse(
                        "Bash",
                        {
                            "command": "echo started > started.txt; "
                            "python3 -c 'import time; time.sleep(120)'"
                        },
                    ),
                    Text("never"),
                )
            ),
        ),
        interrupt=signal.SIGINT,
        wait_file="started.txt",
        check=_aborted("aborted_tools"),
    ),
    Case(
        "sigterm_while_waiting",
        "crash",
        (Rule((Hang(600),)),),
        interrupt=signal.SIGTERM,
        check=_no_result(143),
    ),
)
BY_NAME = {case.name: case for case in CASES}


def run_case(
    case: Case, api: StandinAPI, claude_bin: str, env: Mapping[str, str], cwd: Path
) -> Observed:
    """Run ``case`` with the real CLI in ``cwd`` against ``api``."""
    for rule in case.rules:
        api.on(case.prompt, *rule.replies, model=rule.model)
    run_env = {k: v for k, v in env.items() if k not in case.unset}
    run_env.update(case.env)
    argv = [
        claude_bin,
        "--dangerously-skip-permissions",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        *case.args,
        "--",
        case.prompt,
    ]
    seen_before = len(api.requests)
    child = proc.spawn(argv, cwd=cwd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if case.interrupt is not None:
            if case.wait_file:
                wait_for_text(cwd / case.wait_file, deadline=60)
            else:
                api.wait_for_requests(seen_before + 1, timeout=60)
            child.send_signal(case.interrupt)
        out, err = child.communicate(timeout=120)
    finally:
        proc.stop(child, grace=2)
    return observe(child.returncode, out.decode(), err.decode(), api.requests[seen_before:])


def observe(code: int, stdout: str, stderr: str, requests: list[dict[str, Any]]) -> Observed:
    """The facts of one run from its stream-json output."""
    result = init = None
    retries: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    errors: list[str] = []
    for line in stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        kind, subtype = message.get("type"), message.get("subtype")
        if kind == "result":
            result = message
        elif kind == "system" and subtype == "init":
            init = message
        elif kind == "system":
            kept = {k: v for k, v in message.items() if k not in ("uuid", "session_id")}
            (retries if subtype == "api_retry" else system).append(kept)
        elif kind == "assistant" and message.get("error"):
            errors.append(str(message["error"]))
    return Observed(
        exit_code=code,
        result=result,
        api_retries=retries,
        system=system,
        assistant_errors=errors,
        init=init,
        stderr=stderr.strip(),
        models=[str(body.get("model")) for body in requests],
    )


def load_recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


def recorded_names() -> list[str]:
    return sorted(path.stem for path in DATA.glob("*.json"))
