"""What the stand-in model answers to one request.

``delay`` waits before answering (released at once when the server stops, which then
drops the connection); ``usage`` overrides some of the token counts reported with the
reply (the CLI prices them itself: large counts make a budget test spend "dollars").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

# Usage reported with every reply unless overridden: non-zero so the CLI computes a cost.
INPUT_TOKENS: Final = 120
OUTPUT_TOKENS: Final = 30
USAGE_KEYS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)

# The Anthropic error ``type`` the real API sends with each status.
ERROR_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# The name of the tool the CLI offers for ``--json-schema`` (its input schema is the
# schema given); calling it ends the run with that input as ``structured_output``.
STRUCTURED_OUTPUT_TOOL: Final = "StructuredOutput"


class _Generate:
    """Marker: generate the structured output from the schema the CLI sent."""

    def __repr__(self) -> str:
        return "GENERATE"


GENERATE: Final = _Generate()


@dataclass(frozen=True)
class Text:
    """Reply with one text block and ``stop_reason: end_turn``."""

    text: str
    usage: Mapping[str, int] | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class ToolUse:
    """Reply with one ``tool_use`` block (``stop_reason: tool_use``); the CLI runs the tool
    and sends its ``tool_result`` in the next request. ``input`` is a mapping for every
    real tool; anything else is sent as given."""

    name: str
    input: Any
    usage: Mapping[str, int] | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Output:
    """Answer with a structured output: a ``StructuredOutput`` tool call when the request
    offers that tool (the CLI was given ``--json-schema``), else the value as JSON text.
    ``value=GENERATE`` makes one that satisfies the tool's schema."""

    value: Any = GENERATE
    usage: Mapping[str, int] | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class HttpError:
    """Answer with ``status``, an Anthropic-style error body and ``headers`` (for example
    ``retry-after``); ``type`` defaults to the real API's type for the status."""

    status: int
    type: str | None = None
    message: str = "stand-in error"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @property
    def error_type(self) -> str:
        return self.type or ERROR_TYPES.get(self.status, "api_error")


@dataclass(frozen=True)
class Hang:
    """Hold the request open for ``seconds`` (released early when the server stops), then
    answer with ``then``, or drop the connection when ``then`` is None."""

    seconds: float
    then: Text | ToolUse | Output | HttpError | None = None


Reply = Text | ToolUse | Output | HttpError | Hang
