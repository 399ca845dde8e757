"""A task's structured output (``output_schema``): the answer must match its schema.

The CLI gets the schema through ``--json-schema`` and reports the model's answer as the
result's ``structured_output``. The runner validates it again (the task's dependents
read it through templates and ``for_each``): a missing answer, or one that does not
validate, is ``failure_kind: output_invalid`` with the first problems found.
"""

from __future__ import annotations

from typing import Any

import jsonschema

_SHOWN = 3


def problem(value: Any, schema: object) -> str | None:
    """Why ``value`` is not a valid answer for ``schema``, or None when it is."""
    if value is None:
        return "the agent gave no structured output (output_schema is set)"
    validator = jsonschema.Draft202012Validator(schema)  # type: ignore[arg-type]
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    shown = "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}"
        for e in errors[:_SHOWN]
    )
    more = f" (and {len(errors) - _SHOWN} more)" if len(errors) > _SHOWN else ""
    return f"the structured output does not match output_schema: {shown}{more}"
