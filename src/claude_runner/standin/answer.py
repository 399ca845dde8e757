"""A rehearsal script and one request of the CLI -> the stand-in model's reply.

Turn ``i`` (given by the server, which counts the replies delivered to a task attempt's
key, or else the number of assistant turns in the conversation) < len(tools) makes tool
call ``i``; later turns give the final answer. That is a ``StructuredOutput`` call when
the CLI was given ``--json-schema`` (the call ends the run, with the value as
``structured_output`` and its JSON as the result text), else the result text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claude_runner.standin import wire
from claude_runner.standin.replies import GENERATE, HttpError, Output, Reply, Text, ToolUse
from claude_runner.standin.script import Script, ToolCall

BASH_TOOL = "Bash"
WRITE_TOOL = "Write"


def reply_for(
    script: Script, body: Mapping[str, Any], *, attempt: int = 1, turn: int | None = None
) -> Reply:
    """The reply to ``body`` (a /v1/messages request) for a task's ``attempt``; ``turn``
    (0-based) defaults to the number of assistant turns in the conversation."""
    usage = script.usage.counts() if script.usage is not None else None
    delay = float(script.delay or 0)
    if script.error is not None and script.fails(attempt):
        error = script.error
        headers = {} if error.retry_after is None else {"retry-after": str(error.retry_after)}
        return HttpError(
            error.status,
            message=error.message or f"rehearsal: scripted HTTP {error.status}",
            headers=headers,
            delay=delay,
        )
    if turn is None:
        turn = wire.turn_of(body)
    if turn < len(script.tools):
        name, tool_input = tool_input_of(script.tools[turn])
        return ToolUse(name, tool_input, usage=usage, delay=delay)
    if wire.output_schema(body) is not None:
        value = GENERATE if script.output is None else script.output
        return Output(value, usage=usage, delay=delay)
    text = script.result if script.result is not None else wire.prompt_of(body)
    return Text(text, usage=usage, delay=delay)


def tool_input_of(call: ToolCall) -> tuple[str, dict[str, Any]]:
    """The CLI tool and its input for one scripted call."""
    if call.write is not None:
        return WRITE_TOOL, {"file_path": call.write.path, "content": call.write.content}
    return BASH_TOOL, {"command": call.bash or ""}
