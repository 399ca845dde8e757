"""Load a plan file: bounded read, safe YAML, validation, every problem with its line.

``load_plan`` raises one ``PlanError`` listing every problem it found, each as
``FILE:LINE:COL: stages[1].tasks[0].prompt_file: what is wrong``. Reading stops early
only when going on would mean nothing (the file cannot be read, is not UTF-8, is not
YAML, breaks a size limit, or its top level is not a mapping).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import BaseModel, ValidationError

from claude_runner.errors import PlanError, Problem
from claude_runner.plan import messages, rules
from claude_runner.plan.bounded import BUDGET, RECORDED, Budget
from claude_runner.plan.models import SKIP_RULES, Plan, Settings, Stage, Task
from claude_runner.plan.promptfile import read_prompt_file
from claude_runner.plan.yamlsrc import Document, Pos, YamlStop, read_yaml

__all__ = ["MAX_PLAN_BYTES", "load_plan", "read_prompt_file"]

MAX_PLAN_BYTES = 1024 * 1024
MAX_PROBLEMS = 100  # reported at most; validation stops looking soon after

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


def _validate(data: object) -> tuple[Plan | None, list[tuple[_Loc, str, bool]], bool]:
    """The plan (None if invalid), findings as (loc, message, point_at_key), and whether
    validation stopped before checking everything (too many problems)."""
    found: list[tuple[_Loc, str, bool]] = []
    plan = None
    budget = Budget(limit=MAX_PROBLEMS)
    try:
        plan = Plan.model_validate(data, context={SKIP_RULES: True, BUDGET: budget})
    except ValidationError as exc:
        errors = [dict(e) for e in exc.errors(include_url=False) if e["type"] != RECORDED]
        for err in errors + budget.errors:
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                found.append(
                    (loc, messages.unknown_key(str(loc[-1]), _allowed_keys(loc[:-1])), True)
                )
            else:
                found.append((*messages.message(err, loc), False))
    found += [(loc, text, False) for loc, text in rules.check_plan(data)]
    return plan, found, budget.cut


def _where(doc: Document, loc: _Loc, at_key: bool) -> Pos | None:
    if at_key and loc in doc.keys:
        return doc.keys[loc]
    for end in range(len(loc), -1, -1):
        pos = doc.values.get(loc[:end])
        if pos is not None:
            return pos
    return None


def load_plan(path: Path, *, workspace: Path | None = None) -> Plan:
    """Read and validate a v1 plan; raise ``PlanError`` with every problem found (the
    first ``MAX_PROBLEMS`` of them in file order, when there are more)."""
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
            "the top level must be a mapping with version and stages, "
            f"not {messages.describe(doc.data)}",
            doc.values.get(()),
        )
    raw: list[_Raw] = [(loc, pos, text) for loc, pos, text in doc.problems]
    too_big = rules.size_problem(doc.data)
    if too_big is not None:
        loc, text = too_big
        raise PlanError(_problems(file, [*raw, (loc, _where(doc, loc, False), text)]))
    plan, found, cut = _validate(doc.data)
    shadowed = doc.bad  # values YAML could not give: skip follow-on type errors there
    for loc, text, at_key in found:
        if any(loc[: len(b)] == b for b in shadowed):
            continue
        where = (
            f" (the workspace is {workspace})" if workspace and loc[-1:] == ("prompt_file",) else ""
        )
        raw.append((loc, _where(doc, loc, at_key), text + where))
    if raw or plan is None:
        problems = _problems(file, raw)
        more = cut or len(problems) > MAX_PROBLEMS
        raise PlanError(problems[:MAX_PROBLEMS], more=more)
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
