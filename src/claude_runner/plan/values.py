"""The v2 plan's value types as plain rules: durations, money, models, env names, refs,
the closed lists (failure kinds, permission modes, effort levels), and their defaults.

Pure functions and constants, no pydantic: the models, the loader and the command line
(``--model``) share them. Patterns are written for ECMA-262 and Python alike (see
``rules``): explicit classes, ``_END`` instead of ``$``.
"""

from __future__ import annotations

import json
import math
import re

from claude_runner.plan.rules import ID_MAX, echo

_END = r"(?![\s\S])"

# --- durations -------------------------------------------------------------------------

MAX_DURATION_S = 7 * 24 * 3600  # a week: longer is a mistake, and overflows some waits
DURATION_PATTERN = rf"^(?=[0-9])(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?{_END}"
_DURATION_RE = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")


def duration_seconds(value: int | str) -> int:
    """Seconds of a duration: an integer >= 0, or ``90s``, ``30m``, ``2h``, ``1h30m``.

    Raises ValueError with the reason (the message a user sees)."""
    if isinstance(value, int):
        seconds = value
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative, got {echo(value)}")
    else:
        found = _DURATION_RE.fullmatch(value)
        if not value or found is None:
            raise ValueError(
                f"{echo(value)} is not a duration; write seconds as a number (90) or "
                "hours, minutes and seconds in that order: 90s, 30m, 2h, 1h30m"
            )
        if any(len(g) > 12 for g in found.groups() if g):
            raise ValueError(f"the duration {echo(value)} is longer than a week, the limit")
        h, m, s = (int(g) if g else 0 for g in found.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds > MAX_DURATION_S:
        raise ValueError(
            f"the duration {echo(value)} is longer than a week ({MAX_DURATION_S} s), the limit"
        )
    return seconds


# --- money ------------------------------------------------------------------------------


def money(value: float) -> float:
    """US dollars: a positive, finite number."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"an amount of US dollars must be a positive number, got {echo(value)}")
    return float(value)


# --- models -----------------------------------------------------------------------------

MODEL_ALIASES = ("sonnet", "opus", "haiku")
MODEL_ID_PATTERN = rf"^claude-[a-z0-9][a-z0-9.-]*{_END}"
MODEL_PATTERN = rf"^(?:sonnet|opus|haiku|claude-[a-z0-9][a-z0-9.-]*){_END}"
MODEL_MAX = 100
_MODEL_RE = re.compile(r"claude-[a-z0-9][a-z0-9.-]*")


def model_problem(value: str, *, version: str = "v2") -> str | None:
    """Why ``value`` cannot name a model in a ``version`` plan (or on the command line
    with such a plan), or None. v1 keeps sonnet and opus."""
    if version == "v1":
        if value in ("sonnet", "opus"):
            return None
        return f"{echo(value)} is not a v1 model; use 'sonnet' or 'opus' (v2 plans take more)"
    if value in MODEL_ALIASES or (len(value) <= MODEL_MAX and _MODEL_RE.fullmatch(value)):
        return None
    return (
        f"{echo(value)} is not a model; use sonnet, opus, haiku, or a full model id such as "
        "claude-sonnet-4-5 (lowercase letters, digits, '.' and '-')"
    )


# --- defaults (v2) ----------------------------------------------------------------------

DEFAULT_TIMEOUT_S = 2 * 3600
# A Bash tool call may be silent up to 10 minutes, and so may one API call at the CLI's
# default API timeout: 20 minutes of silence is a hang.
DEFAULT_IDLE_TIMEOUT_S = 20 * 60
DEFAULT_RETRIES = 2
DEFAULT_RETRY_ON = ("rate_limited", "api_error", "crash", "idle_timeout")
DEFAULT_BACKOFF_BASE_S = 5
DEFAULT_BACKOFF_MAX_S = 120
DEFAULT_CHECK_ATTEMPTS = 3
DEFAULT_MAX_INSTANCES = 64
MAX_INSTANCES = 1000
MAX_RETRIES = 100
MAX_CHECK_ATTEMPTS = 100
MAX_TURNS = 100_000
DEFAULT_WHEN = "success()"

# --- env --------------------------------------------------------------------------------

ENV_NAME_PATTERN = rf"^(?!CLAUDE_RUNNER_)(?!CLAUDE_CONFIG_DIR{_END})[A-Za-z_][A-Za-z0-9_]*{_END}"
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV = 1000
ENV_NAME_MAX = 1000


def env_name_problem(name: str) -> str | None:
    if not _ENV_NAME_RE.fullmatch(name) or len(name) > ENV_NAME_MAX:
        return (
            f"{echo(name)} is not an environment variable name; use letters, digits and '_', "
            "not starting with a digit"
        )
    if name == "CLAUDE_CONFIG_DIR" or name.startswith("CLAUDE_RUNNER_"):
        return (
            f"{name} is set by the runner for every agent (each concurrency slot has its own "
            "config, each task its marker); choose another name"
        )
    return None


# --- argv-bound text ----------------------------------------------------------------------

# Linux refuses a single argv or environment string over 128 KiB (MAX_ARG_STRLEN).
MAX_ARG_BYTES = 100_000
MAX_LIST_ITEMS = 1000


def arg_problem(text: str, what: str) -> str | None:
    """Text passed to the CLI as one argument (or one environment string) must fit."""
    size = len(text.encode("utf-8"))
    if size > MAX_ARG_BYTES:
        return (
            f"{what} is {size} bytes; a program argument holds at most {MAX_ARG_BYTES} "
            "(Linux refuses more than 128 KiB): shorten it, or put it in a file"
        )
    return None


# --- output schemas ---------------------------------------------------------------------

# Checking a schema against JSON Schema's metaschema costs milliseconds per schema and
# per kilobyte (jsonschema resolves $dynamicRef for every keyword): bounded so that any
# plan loads in well under a second. Identical schemas (a YAML anchor) are checked once.
MAX_OUTPUT_SCHEMA_BYTES = 16 * 1024
MAX_OUTPUT_SCHEMAS = 32  # distinct ones in a plan
MAX_OUTPUT_SCHEMA_TOTAL = 32 * 1024  # their bytes together


def schema_text(value: object) -> str:
    """The canonical compact JSON of a schema (what --json-schema gets, and the cache key)."""
    return json.dumps(
        value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    )


# --- refs -------------------------------------------------------------------------------

_ID = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{ID_MAX - 1}}}"
REF_PATTERN = rf"^{_ID}(?:/(?:{_ID}|\*))?{_END}"
REF_RE = re.compile(rf"{_ID}(?:/(?:{_ID}|\*))?")
