"""Validation whose cost stays bounded however many problems a plan has.

pydantic checks every item and builds every error: a plan of 10,000 broken tasks would
cost seconds and hundreds of MB before the loader printed its first line. The loader
passes a ``Budget`` in the validation context; lists of stages and tasks then validate
their items one at a time (``each_item``) and stop once the budget holds enough errors,
and a mapping with a flood of unknown keys is one error, not thousands
(``few_unknown_keys``). Without a budget (a model validated directly) nothing changes.

Errors found by ``each_item`` are kept in the budget with their full location; the list
itself then fails with one ``recorded`` error, which the loader drops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError, ValidationInfo, ValidatorFunctionWrapHandler
from pydantic_core import PydanticCustomError

BUDGET = "problem_budget"  # validation context key
RECORDED = "recorded"  # error type of a list whose item errors are in the budget
MAX_UNKNOWN_KEYS = 10  # more unknown keys in one mapping are one error


@dataclass
class Budget:
    """Errors found so far in one validation, and when to stop looking for more."""

    limit: int
    errors: list[dict[str, Any]] = field(default_factory=list)
    cut: bool = False  # some items were not checked

    @property
    def full(self) -> bool:
        return len(self.errors) >= self.limit

    def prefix(self, since: int, part: str | int) -> None:
        for err in self.errors[since:]:
            err["loc"] = (part, *err["loc"])


def _budget(info: ValidationInfo) -> Budget | None:
    context = info.context
    found = context.get(BUDGET) if isinstance(context, dict) else None
    return found if isinstance(found, Budget) else None


def each_item(
    model: type[BaseModel], *, max_items: int
) -> Callable[[Any, ValidatorFunctionWrapHandler, ValidationInfo], Any]:
    """A wrap validator for ``list[model]`` that checks items one by one within the budget."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        budget = _budget(info)
        if budget is None or not isinstance(value, list) or not 0 < len(value) <= max_items:
            return handler(value)  # type and length errors: one each, and cheap
        out: list[BaseModel] = []
        start = len(budget.errors)
        for index, item in enumerate(value):
            if budget.full:
                budget.cut = True
                break
            mark = len(budget.errors)
            try:
                out.append(model.model_validate(item, context=info.context))
            except ValidationError as err:
                budget.errors += [
                    dict(e) for e in err.errors(include_url=False) if e["type"] != RECORDED
                ]
            budget.prefix(mark, index)
        if len(budget.errors) == start and len(out) == len(value):
            return out
        budget.prefix(start, str(info.field_name))
        raise PydanticCustomError(RECORDED, "see the recorded errors")

    return validate


def few_unknown_keys(model: type[BaseModel], data: Any) -> Any:
    """A before-validator: a mapping with many unknown keys is one error."""
    fields = model.model_fields
    if isinstance(data, dict) and len(data) > len(fields):
        unknown = [key for key in data if key not in fields]
        if len(unknown) > MAX_UNKNOWN_KEYS:
            raise PydanticCustomError(
                "too_many_unknown_keys",
                "{count} unknown keys, such as {first}; allowed here: {allowed}",
                {
                    "count": len(unknown),
                    "first": ", ".join(repr(str(k))[:40] for k in unknown[:3]),
                    "allowed": ", ".join(fields),
                },
            )
    return data
