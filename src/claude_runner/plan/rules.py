"""Plan rules that span fields, checked on the plain data YAML produced.

They run on raw mappings (not models) so that they are reported together with type
errors, each at its own location; values of the wrong type are left to the models.
Pure functions, no pydantic or YAML import: ``models`` and ``loader`` share them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

Loc = tuple[str | int, ...]
Finding = tuple[Loc, str]

ID_MAX = 64
# "(?![\s\S])" ends the input in both ECMA and Python regexes (Python's "$" also matches
# before a final newline).
_END = r"(?![\s\S])"
ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{ID_MAX - 1}}}$"
ID_RE = re.compile(ID_PATTERN)  # used with fullmatch
ID_SCHEMA_PATTERN = ID_PATTERN.removesuffix("$") + _END  # the same for regex.search users
ID_RULE = (
    f"ids become directory names: use 1-{ID_MAX} letters, digits, '_', '-' or '.', "
    f"starting with a letter or digit (pattern {ID_PATTERN})"
)
# prompt_path_problem as a regex, for editors (the schema): no control character, not
# absolute, no '..' part, not blank, not only '.' and '/' parts, no trailing '/'.
PROMPT_PATH_PATTERN = (
    rf"^(?!/)(?!(?:.*/)?\.\.(?:/|{_END}))(?!(?:\./|/)*\.?{_END})(?=.*\S)"
    rf"[^\x00-\x1f]*[^/\x00-\x1f]{_END}"
)


def id_message(value: str) -> str:
    return f"{value!r} is not a safe id; {ID_RULE}"


def prompt_path_problem(rel: str) -> str | None:
    """Why ``rel`` cannot name a prompt file inside the workspace, or None if it can."""
    hint = "write a path relative to the workspace, such as prompts/task.md"
    if not rel.strip():
        return f"prompt_file is empty; {hint}"
    if any(ord(c) < 0x20 for c in rel):
        return f"prompt_file {rel!r} contains a control character; {hint}"
    if rel.startswith("/"):
        return f"prompt_file {rel!r} is absolute; {hint}"
    parts = rel.split("/")
    if ".." in parts:
        return f"prompt_file {rel!r} contains '..' (path traversal is blocked); {hint}"
    if rel.endswith("/") or all(part in ("", ".") for part in parts):
        return f"prompt_file {rel!r} does not name a file; {hint}"
    return None


def dotted(loc: Loc) -> str:
    """``('stages', 1, 'tasks', 0, 'id')`` -> ``stages[1].tasks[0].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _first_set(*values: object) -> object:
    return next((v for v in values if v is not None), None)


def _check_prompt_source(task: Mapping[str, object], loc: Loc) -> list[Finding]:
    found: list[Finding] = []
    given = []
    for key in ("prompt", "prompt_file"):
        if key not in task:
            continue
        if task[key] is None:
            found.append(((*loc, key), f"{key} has no value; give it a value or remove the key"))
        else:
            given.append(key)
    if not given and not found:
        found.append((loc, "the task has no prompt: set prompt (text) or prompt_file (a path)"))
    elif len(given) == 2:
        found.append(((*loc, "prompt_file"), "set exactly one of prompt and prompt_file, not both"))
    return found


def _check_shared_guard(task: Mapping[str, object], workspace: object, loc: Loc) -> list[Finding]:
    guards = (task.get("read_only"), task.get("allow_shared_writes"))
    if workspace != "shared" or True in guards:
        return []
    if any(g is not None and not isinstance(g, bool) for g in guards):
        return []  # a mistyped guard is reported by the model
    return [
        (
            loc,
            "a task of a parallel stage in the shared workspace needs read_only: true "
            "(it does not write) or allow_shared_writes: true (concurrent writes accepted); "
            "or give it workspace: worktree",
        )
    ]


def _check_tasks(
    stage: Mapping[str, object], defaults: Mapping[str, object], loc: Loc
) -> list[Finding]:
    tasks = stage.get("tasks")
    if not isinstance(tasks, list):
        return []
    found: list[Finding] = []
    seen: dict[str, int] = {}
    for j, task in enumerate(tasks):
        if not isinstance(task, Mapping):
            continue
        tloc = (*loc, "tasks", j)
        tid = task.get("id")
        if isinstance(tid, str):
            if tid in seen:
                found.append(
                    (
                        (*tloc, "id"),
                        f"duplicate task id {tid!r} (also tasks[{seen[tid]}]); "
                        "task ids must be unique in their stage",
                    )
                )
            else:
                seen[tid] = j
        found += _check_prompt_source(task, tloc)
        if stage.get("mode") == "parallel":
            workspace = _first_set(
                task.get("workspace"), stage.get("workspace"), defaults.get("workspace"), "shared"
            )
            found += _check_shared_guard(task, workspace, tloc)
    return found


def check_plan(data: object) -> list[Finding]:
    """Every cross-field problem of a plan given as plain data; [] when there is none."""
    if not isinstance(data, Mapping):
        return []
    defaults = data.get("defaults")
    if not isinstance(defaults, Mapping):
        defaults = {}
    stages = data.get("stages")
    if not isinstance(stages, list):
        return []
    found: list[Finding] = []
    seen: dict[str, int] = {}
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            continue
        loc: Loc = ("stages", i)
        sid = stage.get("id")
        if isinstance(sid, str):
            if sid in seen:
                found.append(
                    (
                        (*loc, "id"),
                        f"duplicate stage id {sid!r} (also stages[{seen[sid]}]); "
                        "stage ids must be unique in the plan",
                    )
                )
            else:
                seen[sid] = i
        if stage.get("max_parallel") is not None and stage.get("mode") in (None, "sequential"):
            found.append(
                (
                    (*loc, "max_parallel"),
                    "max_parallel applies only to a parallel stage; "
                    "set mode: parallel or remove max_parallel",
                )
            )
        found += _check_tasks(stage, defaults, loc)
    return found
