"""Load-time checks of ``${{ }}`` templates and expressions, with the expression
language's own parser (``claude_runner.expr``).

``check(text, scope)`` is the only function the loader calls. Beyond the structure
(every ``${{`` closed by ``}}``, no empty expression, a ``for_each`` string is one
``${{ }}``, a ``when`` not blank), each expression is parsed and what it reads is checked
against ``Scope``, what the place allows: the roots ``tasks``, ``stages``, ``run``,
``item``/``index`` only in a for_each task, ``env`` only in env values;
``always()``/``success()``/``failure()`` only in ``when``; ``tasks.<id>`` only for an id
unique in the plan and a task upstream of this one. Prompt, check, env, for_each and
when stay raw strings in the resolved plan: they are rendered at run time.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from claude_runner.plan.graph import TaskKey

Place = Literal["prompt", "check", "env", "for_each", "when"]

MAX_EXPRESSION_CHARS = 4096
_OPEN, _CLOSE = "${{", "}}"


@dataclass(frozen=True)
class Scope:
    """What an expression at one place of the plan may refer to."""

    place: Place
    for_each: bool = False  # ``item`` and ``index`` exist (the task fans out)
    # Whether a ``tasks.<id>`` / ``stages.<s>.tasks.<id>`` ref names a task this one
    # (transitively) needs; None when the graph could not be built.
    upstream: Callable[[TaskKey], bool] | None = None
    # The task a bare ``tasks.<id>`` names (unique ids only), or None.
    task_by_id: Callable[[str], TaskKey | None] | None = None


def expressions(text: str) -> list[str] | str:
    """The expressions inside the ``${{ }}`` of ``text``, or why they cannot be read."""
    found: list[str] = []
    start = text.find(_OPEN)
    while start != -1:
        end = text.find(_CLOSE, start + len(_OPEN))
        if end == -1:
            return f"'${{{{' at character {start + 1} is not closed by '}}}}'"
        body = text[start + len(_OPEN) : end]
        if not body.strip():
            return (
                f"the expression at character {start + 1} is empty: write one inside '${{{{ }}}}'"
            )
        if len(body) > MAX_EXPRESSION_CHARS:
            limit = MAX_EXPRESSION_CHARS
            return f"the expression at character {start + 1} is longer than {limit} characters"
        found.append(body.strip())
        start = text.find(_OPEN, end + len(_CLOSE))
    return found


_ROOTS = ("tasks", "stages", "run", "item", "index", "env")
_STATUS_FUNCTIONS = ("always", "success", "failure")


def check(text: str, scope: Scope) -> list[str]:
    """Problems of the template or expression ``text`` at the place ``scope`` describes
    (see the module docstring)."""
    found = expressions(text)
    if isinstance(found, str):
        return [found]
    problems = _structure(text, found, scope)
    if problems:
        return problems
    return _meaning(text, scope)


def _structure(text: str, found: list[str], scope: Scope) -> list[str]:
    whole = len(found) == 1 and text.strip().startswith(_OPEN) and text.strip().endswith(_CLOSE)
    if scope.place == "for_each" and not whole:
        return [
            "for_each is a list, or one '${{ expression }}' that gives a list at run time "
            "(nothing around it)"
        ]
    if scope.place == "when":
        if not text.strip():
            return ["when is empty; write an expression such as success() or always()"]
        if found and not whole:
            return [
                "when is one expression: write it bare (success() && x) or as one "
                "'${{ expression }}', nothing around it"
            ]
    return []


def _parsed(text: str, scope: Scope) -> tuple[frozenset[tuple[object, ...]], frozenset[str]]:
    return _parse(text, condition=scope.place == "when")


# Plans repeat their texts (a when, a prompt shared by many tasks): each is parsed once.
@functools.lru_cache(maxsize=4096)
def _parse(text: str, *, condition: bool) -> tuple[frozenset[tuple[object, ...]], frozenset[str]]:
    from claude_runner.expr import parse_condition, parse_template  # noqa: PLC0415

    if condition:
        expr = parse_condition(text)
        return expr.references(), expr.function_names()
    template = parse_template(text)
    return template.references(), template.function_names()


def _meaning(text: str, scope: Scope) -> list[str]:
    """What the expressions read, against what the place allows."""
    from claude_runner.errors import ExpressionError  # noqa: PLC0415

    if "${{" not in text and scope.place != "when":
        return []
    try:
        refs, functions = _parsed(text, scope)
    except ExpressionError as exc:
        return [str(exc)]
    problems = [
        f"{name}() is only for when (it says how the tasks this one needs ended)"
        for name in sorted(functions & set(_STATUS_FUNCTIONS))
        if scope.place != "when"
    ]
    for path in sorted(refs, key=str):
        problem = _ref_problem(path, scope)
        if problem is not None and problem not in problems:
            problems.append(problem)
    return problems


def _ref_problem(path: tuple[object, ...], scope: Scope) -> str | None:  # noqa: PLR0911
    root = path[0] if path else None
    if root not in _ROOTS:
        close = difflib.get_close_matches(str(root), _ROOTS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown name {root!r}{hint}; an expression reads {', '.join(_ROOTS)}"
    if root in ("item", "index") and not scope.for_each:
        return f"{root} exists only in a task with for_each"
    if root == "env" and scope.place != "env":
        return (
            "${{ env.NAME }} is only for env values (the runner's environment must not end "
            "up in prompts, commands or logs)"
        )
    if root == "tasks" and len(path) > 1 and isinstance(path[1], str):
        key = scope.task_by_id(path[1]) if scope.task_by_id is not None else None
        if scope.task_by_id is not None and key is None:
            return (
                f"tasks.{path[1]} does not name a task whose id is unique in the plan; "
                f"write stages.<stage>.tasks.{path[1]}"
            )
        return _upstream_problem(key, scope)
    if root == "stages" and len(path) > 3 and path[2] == "tasks":
        key = (str(path[1]), str(path[3]))
        return _upstream_problem(key, scope)
    return None


def _upstream_problem(key: TaskKey | None, scope: Scope) -> str | None:
    if key is None or scope.upstream is None or scope.upstream(key):
        return None
    return (
        f"{key[0]}/{key[1]} is not upstream of this task (its output is not known when "
        "this one starts): add it to needs"
    )
