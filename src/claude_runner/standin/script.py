"""The rehearsal script: what the stand-in model does for one task (``rehearse:``).

Pure data, validated by pydantic like the plan models, so the plan loader can embed
``Script`` in the v2 task model and report a bad ``rehearse:`` with its line; building
one starts nothing. ``answer.reply_for`` turns a script into replies.

``usage`` is priced by the CLI itself (the default model: $4 per million input tokens,
$20 per million output tokens). Input-side counts are also the CLI's idea of the
context size: near the model's window (1M tokens) it compacts the conversation before
the next turn (an extra request, which the stand-in answers); a budget rehearsal is
cheaper to run with a large ``output_tokens``, which does not fill the context.

```yaml
rehearse:
  tools:                     # tool calls the stand-in model makes, one per turn, in order
    - bash: "pytest -q"
    - write: {path: notes.md, content: "..."}
  result: "done"             # final text; default: echoes the task's prompt
  output: {approved: false}  # structured output; default: a value satisfying output_schema
  error: 529                 # HTTP status answered instead, or
                             # {status: 429, retry_after: 3s, message: "..."}
  errors_before_success: 2   # with error: the first N attempts get the error, later ones succeed
  usage: {input_tokens: 2000000, output_tokens: 100}   # reported on each reply
  delay: 30s                 # wait before each reply
```
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

DURATION_PATTERN = r"^(?=\d)(\d+h)?(\d+m)?(\d+s)?$"
_DURATION_RE = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HELP = "a duration is a whole number of seconds or a string like 90s, 30m, 2h, 1h30m"


def parse_duration(value: object) -> int:
    """Seconds from an integer >= 0 or a string ``1h30m``/``90s``/``2h`` (spec §1)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if value and match:
            hours, minutes, seconds = (int(g or 0) for g in match.groups())
            return hours * 3600 + minutes * 60 + seconds
    raise PydanticCustomError("duration", f"{_DURATION_HELP}, not {value!r}")


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": DURATION_PATTERN},
            ]
        }
    ),
]
Count = Annotated[StrictInt, Field(ge=0)]
Status = Annotated[StrictInt, Field(ge=400, le=599)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WriteFile(_Closed):
    """A file the Write tool writes (``path`` relative to the task's working directory)."""

    path: StrictStr = Field(min_length=1, description="File path, relative to the task's cwd.")
    content: StrictStr = Field(default="", description="The file's text.")


class ToolCall(_Closed):
    """One tool call of the stand-in model: exactly one of ``bash`` or ``write``."""

    bash: StrictStr | None = Field(default=None, description="A command for the Bash tool.")
    write: WriteFile | None = Field(default=None, description="A file for the Write tool.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ToolCall:
        if (self.bash is None) == (self.write is None):
            raise PydanticCustomError(
                "tool_call", "a tool call is a mapping with exactly one key: bash or write"
            )
        return self


class ApiError(_Closed):
    """An HTTP error the stand-in API answers instead of the model."""

    status: Status = Field(description="HTTP status, 400-599 (429 rate limit, 529 overloaded).")
    retry_after: Duration | None = Field(
        default=None, description="Sent as the retry-after header."
    )
    message: StrictStr | None = Field(default=None, description="The error message.")


def _error_shorthand(value: object) -> object:
    return {"status": value} if isinstance(value, int) and not isinstance(value, bool) else value


class Usage(_Closed):
    """Token counts reported with each reply (the CLI prices them itself)."""

    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cache_creation_input_tokens: Count | None = None
    cache_read_input_tokens: Count | None = None

    def counts(self) -> dict[str, int]:
        """The counts that are set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Script(_Closed):
    """What the stand-in model does for one task. Every key is optional: the default
    calls no tool and answers with the task's prompt (and, with an output schema, a
    value that satisfies it)."""

    tools: tuple[ToolCall, ...] = Field(
        default=(), description="Tool calls the model makes, one per turn, in order."
    )
    result: StrictStr | None = Field(
        default=None, description="The final text; default: the task's prompt."
    )
    output: JsonValue = Field(
        default=None,
        description="The structured output; default: a value satisfying output_schema.",
    )
    error: Annotated[ApiError | None, BeforeValidator(_error_shorthand)] = Field(
        default=None, description="An HTTP status (or {status, retry_after, message}) answered."
    )
    errors_before_success: Count | None = Field(
        default=None,
        description="With error: the first N attempts of the task get it, later ones succeed.",
    )
    usage: Usage | None = Field(default=None, description="Token counts of each reply.")
    delay: Duration | None = Field(default=None, description="Wait before each reply.")

    @model_validator(mode="after")
    def _error_count_needs_error(self) -> Script:
        if self.errors_before_success is not None and self.error is None:
            raise PydanticCustomError(
                "errors_before_success",
                "errors_before_success needs error (the status the first attempts get)",
            )
        return self

    def fails(self, attempt: int) -> bool:
        """Whether the task's ``attempt`` (1-based) gets ``error``."""
        if self.error is None:
            return False
        return self.errors_before_success is None or attempt <= self.errors_before_success


def load(data: Any) -> Script:
    """A script from plain data (a parsed ``rehearse:`` mapping); pydantic errors as is."""
    return Script.model_validate(data)
