"""Load a plan file: bounded read, safe YAML, validation, every problem with its line.

``load_plan`` raises one ``PlanError`` listing every problem it found, each as
``FILE:LINE:COL: stages[1].tasks[0].prompt_file: what is wrong``. Reading stops early
only when going on would mean nothing (the file cannot be read, is not UTF-8, is not
YAML, breaks a size limit, or its top level is not a mapping).
"""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

from pydantic import BaseModel, ValidationError

from claude_runner.errors import PlanError, Problem
from claude_runner.plan import rules
from claude_runner.plan.models import SKIP_RULES, Plan, Settings, Stage, Task
from claude_runner.plan.promptfile import read_prompt_file
from claude_runner.plan.yamlsrc import Document, Pos, YamlStop, read_yaml

__all__ = ["MAX_PLAN_BYTES", "load_plan", "read_prompt_file"]

MAX_PLAN_BYTES = 1024 * 1024

_Loc = tuple[str | int, ...]
_Raw = tuple[_Loc, Pos | None, str]


def _fail(file: str, message: str, pos: Pos | None = None, location: str = "") -> PlanError:
    line, col = pos if pos is not None else (None, None)
    return PlanError([Problem(file, line, col, location, message)])


def _read_bytes(path: Path, file: str) -> bytes:
    try:
        # O_NONBLOCK: a FIFO given as the plan must not hang the runner.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _fail(file, "plan file not found") from None
    except OSError as err:
        raise _fail(file, f"cannot open the plan file: {err.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise _fail(file, "this is a directory, not a plan file")
        raise _fail(file, "not a regular file; give the path of a YAML plan file")
    with os.fdopen(fd, "rb") as fh:
        try:
            raw = fh.read(MAX_PLAN_BYTES + 1)
        except OSError as err:
            raise _fail(file, f"cannot read the plan file: {err.strerror}") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise _fail(
            file,
            f"the plan file is larger than {MAX_PLAN_BYTES // 1024} KiB, the limit "
            f"({MAX_PLAN_BYTES} bytes); a plan is a short list of stages and tasks: "
            "move long prompts into prompt_file",
        )
    return raw


def _decode(raw: bytes, file: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        start = raw.rfind(b"\n", 0, err.start) + 1
        pos = (
            raw.count(b"\n", 0, err.start) + 1,
            len(raw[start : err.start].decode(errors="replace")) + 1,
        )
        raise _fail(
            file,
            f"the plan is not valid UTF-8 (byte 0x{raw[err.start]:02x}); save it as UTF-8",
            pos,
        ) from None


def _describe(value: object) -> str:  # noqa: PLR0911
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{value} (a {type(value).__name__})"


_MODEL_AT: dict[tuple[object, ...], type[BaseModel]] = {
    (): Plan,
    ("defaults",): Settings,
    ("stages", int): Stage,
    ("stages", int, "tasks", int): Task,
}


def _allowed_keys(parent: _Loc) -> list[str]:
    shape = tuple(int if isinstance(p, int) else p for p in parent)
    model = _MODEL_AT.get(shape)
    return list(model.model_fields) if model is not None else []


def _unknown_key(key: str, parent: _Loc) -> str:
    allowed = _allowed_keys(parent)
    text = f"unknown key {key!r}"
    close = difflib.get_close_matches(key.lower(), allowed, n=1, cutoff=0.6)
    if close:
        text += f" (did you mean {close[0]!r}?)"
    if allowed:
        text += f"; allowed here: {', '.join(allowed)}"
    return text


_MISSING_HINTS = {
    "version": "; add version: v1",
    "stages": "; add stages: with at least one stage",
    "tasks": "; add tasks: with at least one task",
}


def _message(err: dict[str, object], loc: _Loc) -> tuple[_Loc, str]:  # noqa: PLR0911
    """The location to report and a message that says what is wrong and how to fix it."""
    kind, value, last = err["type"], err.get("input"), loc[-1] if loc else ""
    raw_ctx = err.get("ctx")
    ctx = raw_ctx if isinstance(raw_ctx, dict) else {}
    if kind == "missing":
        return loc[:-1], f"missing required key {last!r}" + _MISSING_HINTS.get(str(last), "")
    if kind == "extra_forbidden":
        return loc, _unknown_key(str(last), loc[:-1])
    if kind == "literal_error":
        text = f"{_describe(value)} is not allowed; use {ctx.get('expected')}"
        if last == "verbosity":
            text += " (or an alias: json for v, stream-json or stream_json for vv)"
        return loc, text
    if kind == "string_type":
        hint = (
            "; put it in quotes" if value is not None and not isinstance(value, list | dict) else ""
        )
        return loc, f"expected a string, got {_describe(value)}{hint}"
    if kind == "bool_type":
        return loc, f"expected true or false, got {_describe(value)}"
    if kind == "int_type":
        return loc, f"expected a whole number, got {_describe(value)}"
    if kind == "greater_than_equal":
        return loc, f"must be a positive whole number (at least {ctx.get('ge')}), got {value!r}"
    if kind == "too_short":
        what = "stage" if last == "stages" else "task"
        return loc, f"{last} is empty; list at least one {what}"
    if kind == "list_type":
        return loc, f"expected a list, got {_describe(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return loc, f"expected a mapping, got {_describe(value)}"
    return loc, str(err["msg"])


def _validate(data: object) -> tuple[Plan | None, list[tuple[_Loc, str, bool]]]:
    """The plan (None if invalid) and findings as (loc, message, point_at_key)."""
    found: list[tuple[_Loc, str, bool]] = []
    plan = None
    try:
        plan = Plan.model_validate(data, context={SKIP_RULES: True})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc, text = _message(dict(err), tuple(err["loc"]))
            found.append((loc, text, err["type"] == "extra_forbidden"))
    found += [(loc, text, False) for loc, text in rules.check_plan(data)]
    return plan, found


def _where(doc: Document, loc: _Loc, at_key: bool) -> Pos | None:
    if at_key and loc in doc.keys:
        return doc.keys[loc]
    for end in range(len(loc), -1, -1):
        pos = doc.values.get(loc[:end])
        if pos is not None:
            return pos
    return None


def load_plan(path: Path, *, workspace: Path | None = None) -> Plan:
    """Read and validate a v1 plan; raise ``PlanError`` with every problem found."""
    file = str(path)
    return _load(_read_bytes(path, file), file, workspace)


def load_plan_bytes(raw: bytes, file: str) -> Plan:
    """Validate a plan read elsewhere (standard input), under the same size limit."""
    if len(raw) > MAX_PLAN_BYTES:
        raise _fail(file, f"the plan is larger than {MAX_PLAN_BYTES} bytes, the limit")
    return _load(raw, file, None)


def _load(data: bytes, file: str, workspace: Path | None) -> Plan:
    text = _decode(data, file)
    try:
        doc = read_yaml(text)
    except YamlStop as stop:
        raise _fail(file, stop.message, stop.pos) from None
    if doc is None:
        raise _fail(file, "the plan is empty; it needs at least version: v1 and stages:")
    if not isinstance(doc.data, dict):
        raise _fail(
            file,
            f"the top level must be a mapping with version and stages, not {_describe(doc.data)}",
            doc.values.get(()),
        )
    raw: list[_Raw] = [(loc, pos, text) for loc, pos, text in doc.problems]
    plan, found = _validate(doc.data)
    shadowed = doc.bad  # values YAML could not give: skip follow-on type errors there
    for loc, text, at_key in found:
        if any(loc[: len(b)] == b for b in shadowed):
            continue
        where = (
            f" (the workspace is {workspace})" if workspace and loc[-1:] == ("prompt_file",) else ""
        )
        raw.append((loc, _where(doc, loc, at_key), text + where))
    if raw or plan is None:
        raise PlanError(_problems(file, raw))
    return plan


def _problems(file: str, raw: list[_Raw]) -> list[Problem]:
    seen: set[tuple[Pos | None, str]] = set()
    out = []
    for loc, pos, text in sorted(raw, key=lambda r: (r[1] or (0, 0), rules.dotted(r[0]))):
        if (pos, text) in seen:
            continue  # one anchored value reached twice through aliases
        seen.add((pos, text))
        line, col = pos if pos is not None else (None, None)
        out.append(Problem(file, line, col, rules.dotted(loc), text))
    return out
