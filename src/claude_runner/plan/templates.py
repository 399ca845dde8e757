"""Load-time checks of ``${{ }}`` templates and expressions: the one seam to the
expression language.

``check(text, scope)`` is the only function the loader calls. Until
``claude_runner.expr`` (parse_expression, parse_template, references) is merged, it checks
structure only: every ``${{`` is closed by ``}}``, no expression is empty, a ``for_each``
string is one ``${{ }}``, and a ``when`` is not blank. The checks that need the parser
are written against ``Scope`` already (what the place allows: ``env.*`` only in env
values, ``item``/``index`` only in a for_each task, ``tasks.*`` only for upstream tasks);
pointing ``check`` at the real parser enables them (tests marked xfail name this seam).
Prompt, check, env, for_each and when stay raw strings in the resolved plan: they are
rendered at run time.
"""

from __future__ import annotations

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


def check(text: str, scope: Scope) -> list[str]:
    """Problems of the template or expression ``text`` at the place ``scope`` describes
    (structure only, for now: see the module docstring)."""
    found = expressions(text)
    if isinstance(found, str):
        return [found]
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
