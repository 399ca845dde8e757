"""The suite's name for the stand-in Messages API, which lives in the package
(``claude_runner.standin``: one implementation for the tests and ``--rehearse``)."""

from __future__ import annotations

from claude_runner.standin.replies import (
    GENERATE,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    Hang,
    HttpError,
    Output,
    Reply,
    Text,
    ToolUse,
)
from claude_runner.standin.server import TITLE, Stats
from claude_runner.standin.server import StandinAPI as FakeMessagesAPI
from claude_runner.standin.wire import (
    first_user_text,
    is_title_request,
    output_schema,
    prompt_of,
    sse_events,
    tool_results,
    turn_of,
)

__all__ = [
    "GENERATE",
    "INPUT_TOKENS",
    "OUTPUT_TOKENS",
    "TITLE",
    "FakeMessagesAPI",
    "Hang",
    "HttpError",
    "Output",
    "Reply",
    "Stats",
    "Text",
    "ToolUse",
    "first_user_text",
    "is_title_request",
    "output_schema",
    "prompt_of",
    "sse_events",
    "tool_results",
    "turn_of",
]
