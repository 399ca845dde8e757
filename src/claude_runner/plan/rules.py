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
MAX_TASKS = 10_000  # in a plan; bounds the work of every later step
PATH_MAX, NAME_MAX = 4095, 255  # Linux's limits, in bytes
# Patterns here are written so that ECMA-262 (editors' JSON Schema validators, with the
# "u" flag) and Python's re read them alike: no \s, \d, "." or "$", whose meanings differ
# (\s takes \x1c-\x1f and \x85 in Python, \ufeff in ECMA-262; "." stops at \u2028 in
# ECMA-262; "$" also matches before a final newline in Python). "(?![\s\S])" ends the
# input in both.
_END = r"(?![\s\S])"
ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{ID_MAX - 1}}}$"
ID_RE = re.compile(ID_PATTERN)  # used with fullmatch
ID_SCHEMA_PATTERN = ID_PATTERN.removesuffix("$") + _END  # the same for regex.search users
ID_RULE = (
    f"ids become directory names: use 1-{ID_MAX} letters, digits, '_', '-' or '.', "
    f"starting with a letter or digit (pattern {ID_PATTERN})"
)

# Characters that show nothing: Unicode's White_Space and Default_Ignorable_Code_Point
# (zero-width spaces and joiners, bidi controls, variation selectors, tag characters,
# Hangul fillers, the BOM) and every control character. Text made only of these is blank.
BLANK_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x0020),
    (0x007F, 0x00A0),
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x1680, 0x1680),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x206F),
    (0x3000, 0x3000),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _class_char(code: int) -> str:
    # BMP as \uXXXX escapes (both dialects); astral as the character itself: ECMA-262's
    # \u{...} and Python's \U........ have no common spelling, a literal has.
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


BLANK_CLASS = "".join(
    _class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}"
    for lo, hi in BLANK_RANGES
)
_VISIBLE_RE = re.compile(f"[^{BLANK_CLASS}]")
# No NUL (no program can be given it) and no half of a surrogate pair (no UTF-8 for it).
_CLEAN = r"[^\x00\ud800-\udfff]"
CLEAN_TEXT_PATTERN = rf"^{_CLEAN}*{_END}"
# Text with something to read: not blank, and clean.
TEXT_PATTERN = rf"^(?=[\s\S]*[^{BLANK_CLASS}]){_CLEAN}*{_END}"
# A directory (add_dirs): not blank, no control character.
DIR_PATTERN = rf"^(?=[\s\S]*[^{BLANK_CLASS}])[^\x00-\x1f\ud800-\udfff]*{_END}"
# prompt_path_problem as a regex, for editors (the schema): no control character, not
# absolute, no '..' part, not blank, not only '.' and '/' parts, no trailing '/'.
_PATH_CHAR = r"[^\x00-\x1f\ud800-\udfff]"
PROMPT_PATH_PATTERN = (
    rf"^(?!/)(?![\s\S]*(?:^|/)\.\.(?:/|{_END}))(?!(?:\./|/)*\.?{_END})"
    rf"(?=[\s\S]*[^{BLANK_CLASS}]){_PATH_CHAR}*[^/\x00-\x1f\ud800-\udfff]{_END}"
)


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: only whitespace, invisible or control characters."""
    return _VISIBLE_RE.search(text) is None


ECHO_CHARS = 60  # values quoted in messages are cut to this many characters


def echo(value: object) -> str:
    """``repr`` of a value for a message, cut to ``ECHO_CHARS`` characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = len(str(abs(value))) if abs(value) < 10**ECHO_CHARS else ECHO_CHARS + 1
        if digits <= ECHO_CHARS:
            return str(value)
        return f"{str(value)[: ECHO_CHARS // 2]}... (a number of {_int_width(value)} digits)"
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[: ECHO_CHARS // 2]!r}... ({len(value)} characters)"
    return repr(value)


def _int_width(value: int) -> int:
    # len(str(value)) without the quadratic conversion of a huge int.
    width = max(1, int(abs(value).bit_length() * 0.30103))
    while 10**width <= abs(value):
        width += 1
    return width


def id_message(value: str) -> str:
    return f"{echo(value)} is not a safe id; {ID_RULE}"


def prompt_path_problem(rel: str) -> str | None:  # noqa: PLR0911
    """Why ``rel`` cannot name a prompt file inside the workspace, or None if it can."""
    hint = "write a path relative to the workspace, such as prompts/task.md"
    if is_blank(rel):
        return f"prompt_file is empty; {hint}"
    if any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in rel):
        return f"prompt_file {echo(rel)} contains a control character; {hint}"
    if rel.startswith("/"):
        return f"prompt_file {echo(rel)} is absolute; {hint}"
    parts = rel.split("/")
    if ".." in parts:
        return f"prompt_file {echo(rel)} contains '..' (path traversal is blocked); {hint}"
    if rel.endswith("/") or all(part in ("", ".") for part in parts):
        return f"prompt_file {echo(rel)} does not name a file; {hint}"
    if len(rel.encode()) > PATH_MAX or any(len(p.encode()) > NAME_MAX for p in parts):
        return (
            f"prompt_file {echo(rel)} is longer than a file system allows ({PATH_MAX} bytes "
            f"in all, {NAME_MAX} for one name): no such file can exist; {hint}"
        )
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


def _check_unique(
    value: object, index: int, seen: dict[str, tuple[int, str]], loc: Loc, *, kind: str
) -> list[Finding]:
    """Ids are unique, and also when case is ignored: each becomes a directory name, and
    on a case-insensitive file system (macOS, Windows) 'B' and 'b' are one directory."""
    if not isinstance(value, str):
        return []
    folded = value.lower()
    first = seen.setdefault(folded, (index, value))
    if first[0] == index:
        return []
    where = f"{'stages' if kind == 'stage' else 'tasks'}[{first[0]}]"
    if first[1] == value:
        scope = "in the plan" if kind == "stage" else "in their stage"
        text = (
            f"duplicate {kind} id {echo(value)} (also {where}); {kind} ids must be unique {scope}"
        )
        return [(loc, text)]
    return [
        (
            loc,
            f"{kind} id {echo(value)} differs from {echo(first[1])} ({where}) only by case; "
            "ids become directory names, and on a case-insensitive file system (macOS, "
            "Windows) the two would be one directory: rename one",
        )
    ]


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
    seen: dict[str, tuple[int, str]] = {}
    for j, task in enumerate(tasks):
        if not isinstance(task, Mapping):
            continue
        tloc = (*loc, "tasks", j)
        found += _check_unique(task.get("id"), j, seen, (*tloc, "id"), kind="task")
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
    seen: dict[str, tuple[int, str]] = {}
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            continue
        loc: Loc = ("stages", i)
        found += _check_unique(stage.get("id"), i, seen, (*loc, "id"), kind="stage")
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
