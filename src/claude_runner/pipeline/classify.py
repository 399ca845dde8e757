"""Why an attempt of a task failed, from what the runner saw of the Claude Code CLI.

A pure function of the CLI's ``result`` message (or its absence), its exit, the tail of
its stderr and what the runner itself did. The rules follow what the pinned CLI prints,
recorded in ``docs/cli-behaviour.md`` and re-checked by ``tests/test_cli_contract.py``:

1. The runner stopped the CLI before its result (``stopped``): that reason wins
   (``timeout``, ``idle_timeout``, ``cancelled``).
2. A result decides, whatever the exit (a CLI that printed its result and then had to be
   stopped is judged by the result):
   - ``subtype`` ``error_max_turns`` -> ``max_turns``; ``error_max_budget_usd`` ->
     ``budget`` (even when the turn that crossed the cap gave a final answer);
     ``error_max_structured_output_retries`` -> ``output_invalid``;
   - ``is_error: false`` -> success, unless an output schema was given and the result
     carries no ``structured_output`` (a model that never calls the StructuredOutput
     tool gets one reminder, then the CLI reports success without it) ->
     ``output_invalid``;
   - ``is_error: true`` with ``subtype: success`` is an API failure, told apart by
     ``api_error_status``: 429 -> ``rate_limited``; 401, 403, or no status and a "not
     logged in"/"invalid API key" text -> ``auth``; a status the CLI itself treats as
     transient (408, 409, 5xx, 529), or none with ``terminal_reason: api_error`` (a
     request timed out, a dropped connection) -> ``api_error``; another 4xx (400
     invalid request, 404 unknown model, 413 too large: the CLI does not retry them
     either, and neither should the runner by default) -> ``agent_error``;
   - ``terminal_reason`` ``aborted_*`` (interrupted from outside, not by the runner) ->
     ``crash``; anything else with ``is_error`` (``error_during_execution``, e.g. an
     unknown ``--resume`` id) -> ``agent_error``.
3. No result: stderr showing that the CLI refused its arguments or configuration (an
   invalid option value, a missing MCP or settings file, an invalid ``--json-schema``)
   -> ``setup_failed``; else ``crash`` (killed, exit != 0, or even exit 0: a SIGINT while
   a request is pending ends the CLI with 0 and no result).

The Retry-After a server sends is not in the result. With ``CLAUDE_CODE_MAX_RETRIES``
> 0 the CLI honours it (up to 60 s; above that it gives up at once) and announces each
wait in a ``system``/``api_retry`` line as ``retry_delay_ms`` (Retry-After x 1-1.25, or
its own exponential backoff from ~0.5 s without one). ``retry_after_s`` is that last
announced delay, the best hint there is; None when no retry line was seen.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

FailureKind = Literal[
    "timeout",
    "idle_timeout",
    "rate_limited",
    "api_error",
    "auth",
    "budget",
    "max_turns",
    "crash",
    "agent_error",
    "output_invalid",
    "check_failed",
    "preserve_failed",
    "setup_failed",
    "upstream_failed",
    "cancelled",
]
Stop = Literal["timeout", "idle_timeout", "cancelled"]

_SUBTYPE_KINDS: Final[Mapping[str, FailureKind]] = {
    "error_max_turns": "max_turns",
    "error_max_budget_usd": "budget",
    "error_max_structured_output_retries": "output_invalid",
}
_AUTH_STATUSES: Final = frozenset({401, 403})
_TRANSIENT_4XX: Final = frozenset({408, 409})
# Result texts of authentication failures that carry no HTTP status (no credentials).
_AUTH_TEXT: Final = re.compile(
    r"^(Not logged in|Invalid API key|Failed to authenticate|OAuth token)", re.IGNORECASE
)
# stderr of a CLI that refused to start with the arguments or files it was given.
_SETUP_TEXT: Final = re.compile(
    r"^error: option '|^Error: Invalid MCP configuration|^Error: Settings file not found"
    r"|^Error: --json-schema |cannot be used with root/sudo privileges"
    r"|^Error: When using --print|^error: unknown option",
    re.MULTILINE,
)
_REASON_MAX = 300


@dataclass(frozen=True)
class Verdict:
    """``kind`` None means success; ``reason`` is one line for events and results."""

    kind: FailureKind | None
    reason: str
    retry_after_s: float | None = None


def classify(
    result: Mapping[str, object] | None,
    *,
    returncode: int | None,
    stderr_tail: str = "",
    stopped: Stop | None = None,
    output_required: bool = False,
    last_api_retry: Mapping[str, object] | None = None,
) -> Verdict:
    """The verdict on one attempt.

    ``result``: the CLI's ``result`` message, None when it printed none. ``returncode``:
    as ``Popen.returncode`` (negative: killed by that signal; None: not exited).
    ``stopped``: the reason the runner stopped the CLI, when it did so before the result
    arrived. ``output_required``: the CLI was given ``--json-schema``.
    ``last_api_retry``: the last ``system``/``api_retry`` message on stdout, if any.
    """
    if stopped is not None:
        return Verdict(stopped, _STOP_REASONS[stopped])
    if result is None:
        return _no_result(returncode, stderr_tail)
    return _judge(result, output_required=output_required, last_api_retry=last_api_retry)


def _judge(
    result: Mapping[str, object],
    *,
    output_required: bool,
    last_api_retry: Mapping[str, object] | None,
) -> Verdict:
    subtype = str(result.get("subtype") or "")
    text = _text(result)
    if subtype in _SUBTYPE_KINDS:
        return Verdict(_SUBTYPE_KINDS[subtype], f"{subtype}: {text}")
    if result.get("is_error") is False:
        if output_required and result.get("structured_output") is None:
            return Verdict("output_invalid", "the agent gave no structured output: " + text)
        return Verdict(None, "")
    if subtype == "success":
        return _api_failure(result, text, last_api_retry)
    if str(result.get("terminal_reason") or "").startswith("aborted"):
        return Verdict("crash", f"the CLI was interrupted ({result['terminal_reason']})")
    return Verdict("agent_error", f"{subtype or 'error'}: {text}")


_STOP_REASONS: Final[Mapping[Stop, str]] = {
    "timeout": "the attempt ran out of time",
    "idle_timeout": "the CLI printed nothing for too long",
    "cancelled": "cancelled",
}


def _api_failure(
    result: Mapping[str, object], text: str, last_api_retry: Mapping[str, object] | None
) -> Verdict:
    status = result.get("api_error_status")
    hint = _retry_hint(last_api_retry)
    if status == 429:
        return Verdict("rate_limited", f"rate limited (HTTP 429): {text}", hint)
    if status in _AUTH_STATUSES or (status is None and _AUTH_TEXT.match(text)):
        where = f" (HTTP {status})" if status is not None else ""
        return Verdict("auth", f"authentication failed{where}: {text}")
    if isinstance(status, int) and (status >= 500 or status in _TRANSIENT_4XX):
        return Verdict("api_error", f"API error (HTTP {status}): {text}", hint)
    if isinstance(status, int):
        return Verdict("agent_error", f"the API refused the request (HTTP {status}): {text}")
    if result.get("terminal_reason") == "api_error":
        return Verdict("api_error", f"API error: {text}", hint)
    return Verdict("agent_error", f"the agent reported an error: {text}")


def _no_result(returncode: int | None, stderr_tail: str) -> Verdict:
    stderr = stderr_tail.strip()
    if _SETUP_TEXT.search(stderr):
        return Verdict("setup_failed", "the CLI refused its arguments: " + _clip(stderr))
    if returncode is None:
        how = "still running"
    elif returncode < 0:
        how = f"killed by {_signal_name(-returncode)}"
    else:
        how = f"exit code {returncode}"
    reason = f"no result message from the CLI ({how})"
    return Verdict("crash", f"{reason}; stderr: {_clip(stderr)}" if stderr else reason)


def _retry_hint(message: Mapping[str, object] | None) -> float | None:
    delay = message.get("retry_delay_ms") if message is not None else None
    if isinstance(delay, int | float) and not isinstance(delay, bool) and delay >= 0:
        return round(delay / 1000, 3)
    return None


def _text(result: Mapping[str, object]) -> str:
    """The result text, or the ``errors`` list of a result that has none."""
    text = result.get("result")
    if isinstance(text, str) and text:
        return _clip(text)
    errors = result.get("errors")
    if isinstance(errors, list) and errors:
        return _clip("; ".join(str(e) for e in errors))
    return ""


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _REASON_MAX else line[: _REASON_MAX - 3] + "..."


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
