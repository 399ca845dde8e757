"""Load a plan file: bounded read, safe YAML, validation, every problem with its line.

``load_plan`` raises one ``PlanError`` listing every problem it found, each as
``FILE:LINE:COL: stages[1].tasks[0].prompt_file: what is wrong``. Reading stops early
only when going on would mean nothing (the file cannot be read, is not UTF-8, is not
YAML, breaks a size limit, or its top level is not a mapping).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ValidationError

from claude_runner.errors import PlanError, Problem
from claude_runner.plan import checks, messages, rules
from claude_runner.plan.bounded import BUDGET, RECORDED, Budget
from claude_runner.plan.models import SKIP_RULES, Plan, Settings, Stage, Task
from claude_runner.plan.models_v2 import (
    Backoff,
    CheckSpec,
    PlanV2,
    RehearseSpec,
    RehearseTool,
    RetriesSpec,
    SettingsV2,
    StageV2,
    TaskV2,
    Usage,
    WriteTool,
)
from claude_runner.plan.models_v2 import RehearseError as RehearseErrorSpec
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


_MODELS: dict[str, dict[tuple[object, ...], type[BaseModel]]] = {
    "v1": {
        (): Plan,
        ("defaults",): Settings,
        ("stages", int): Stage,
        ("stages", int, "tasks", int): Task,
    },
    "v2": {
        (): PlanV2,
        ("defaults",): SettingsV2,
        ("stages", int): StageV2,
        ("stages", int, "tasks", int): TaskV2,
    },
}
# v2's nested mappings, by the key that holds them (the same wherever it is).
_NESTED: dict[object, type[BaseModel]] = {
    "retries": RetriesSpec,
    "backoff": Backoff,
    "check": CheckSpec,
    "rehearse": RehearseSpec,
    "error": RehearseErrorSpec,
    "usage": Usage,
    "write": WriteTool,
    ("tools", int): RehearseTool,
}


def _model_at(parent: _Loc, version: str) -> type[BaseModel] | None:
    shape = tuple(int if isinstance(p, int) else p for p in parent)
    model = _MODELS[version].get(shape)
    if model is None and version == "v2" and shape:
        model = _NESTED.get(shape[-2:]) or _NESTED.get(shape[-1])
    return model


def _unknown_key(loc: _Loc, version: str) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    model = _model_at(parent, version)
    allowed = list(model.model_fields) if model is not None else []
    hint = ""
    if version == "v1":
        v2 = _model_at(parent, "v2")
        if v2 is not None and key in v2.model_fields:
            hint = f" (set version: v2 to use {key})"
    return messages.unknown_key(key, allowed, hint)


def _version(data: Mapping[str, object]) -> str:
    """The version whose models check the plan: v1 only when it says so (v2 is a
    superset, so a plan without a valid version gets v2's messages)."""
    return "v1" if data.get("version") == "v1" else "v2"


def _validate(
    data: Mapping[str, object], version: str
) -> tuple[Plan | PlanV2 | None, list[tuple[_Loc, str, bool]], bool]:
    """The plan (None if invalid), findings as (loc, message, point_at_key), and whether
    validation stopped before checking everything (too many problems)."""
    found: list[tuple[_Loc, str, bool]] = []
    plan: Plan | PlanV2 | None = None
    budget = Budget(limit=MAX_PROBLEMS)
    model: type[Plan] | type[PlanV2] = Plan if version == "v1" else PlanV2
    try:
        plan = model.model_validate(data, context={SKIP_RULES: True, BUDGET: budget})
    except ValidationError as exc:
        errors = [dict(e) for e in exc.errors(include_url=False) if e["type"] != RECORDED]
        for err in errors + budget.errors:
            # Union branches ("#dict") and dict keys ("[key]") are not places in the plan.
            raw = tuple(err["loc"])
            loc = tuple(p for p in raw if not (isinstance(p, str) and p[:1] in "#["))
            if err["type"] == "extra_forbidden":
                found.append((loc, _unknown_key(loc, version), True))
            else:
                found.append((*messages.message(err, loc), "[key]" in raw))
    return plan, found, budget.cut


def _where(doc: Document, loc: _Loc, at_key: bool) -> Pos | None:
    if at_key and loc in doc.keys:
        return doc.keys[loc]
    for end in range(len(loc), -1, -1):
        pos = doc.values.get(loc[:end])
        if pos is not None:
            return pos
    return None


def load_plan(path: Path, *, workspace: Path | None = None) -> Plan | PlanV2:
    """Read and validate a plan (``version: v1`` or ``v2``); raise ``PlanError`` with
    every problem found (the first ``MAX_PROBLEMS`` of them in file order, when there are
    more). The plan carries its graph and each task's line, for ``resolve``."""
    file = str(path)
    return _load(_read_bytes(path, file), file, workspace)


def load_plan_bytes(raw: bytes, file: str) -> Plan | PlanV2:
    """Validate a plan read elsewhere (standard input), under the same size limit."""
    if len(raw) > MAX_PLAN_BYTES:
        raise _fail(file, f"the plan is larger than {MAX_PLAN_BYTES} bytes, the limit")
    return _load(raw, file, None)


def _load(data: bytes, file: str, workspace: Path | None) -> Plan | PlanV2:
    text = _decode(data, file)
    try:
        doc = read_yaml(text)
    except YamlStop as stop:
        raise _fail(file, stop.message, stop.pos) from None
    if doc is None:
        raise _fail(file, "the plan is empty; it needs at least version: v2 and stages:")
    if not isinstance(doc.data, dict):
        raise _fail(
            file,
            "the top level must be a mapping with version and stages, "
            f"not {messages.describe(doc.data)}",
            doc.values.get(()),
        )
    raw: list[_Raw] = [(loc, pos, text) for loc, pos, text in doc.problems]
    too_big = checks.size_problem(doc.data)
    if too_big is not None:
        loc, text = too_big
        raise PlanError(_problems(file, [*raw, (loc, _where(doc, loc, False), text)]))
    version = _version(doc.data)
    plan, found, cut = _validate(doc.data, version)
    spanning, graph = checks.check_plan(doc.data, version)
    found += [(loc, text, False) for loc, text in spanning]
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
        more = cut or doc.more or len(problems) > MAX_PROBLEMS
        raise PlanError(problems[:MAX_PROBLEMS], more=more)
    plan._graph = graph
    plan._lines = _task_lines(doc)
    return plan


def _task_lines(doc: Document) -> dict[tuple[str, str], int]:
    """Where each task starts (for messages at run time), from the validated data."""
    lines = {}
    for i, stage in enumerate(doc.data["stages"]):  # type: ignore[index]
        for j, task in enumerate(stage["tasks"]):
            pos = doc.values.get(("stages", i, "tasks", j))
            if pos is not None:
                lines[(stage["id"], task["id"])] = pos[0]
    return lines


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
