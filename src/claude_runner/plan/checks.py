"""The rules that span a plan, on the plain data YAML produced: v1's (``rules``), the
task graph (``graph``), and v2's templates and fan-out limits.

They run on raw mappings, as far as the data allows (a task whose id is not a string is
left to the models), so they are reported together with type errors, each where it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from claude_runner.plan import rules, templates, values
from claude_runner.plan.graph import Graph, StageSpec, TaskKey, TaskSpec, compile_graph

Loc = tuple[str | int, ...]
Finding = tuple[Loc, str]


def _mappings(items: object) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, Mapping):
                yield index, item


def _refs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(r for r in value if isinstance(r, str) and values.REF_RE.fullmatch(r))


def _unique(items: object) -> list[tuple[int, Mapping[str, Any]]]:
    """Mappings with a string id, the first of each id (ignoring case): duplicates are
    reported by ``rules`` and must not look like a cycle to the graph."""
    if not isinstance(items, list):
        return []
    seen: set[str] = set()
    out = []
    for index, item in enumerate(items):
        ident = item.get("id") if isinstance(item, dict) else None
        if isinstance(ident, str):
            folded = ident.lower()
            if folded not in seen:
                seen.add(folded)
                out.append((index, item))
    return out


def _specs(data: Mapping[str, Any]) -> tuple[tuple[StageSpec, ...], list[tuple[int, list[int]]]]:
    """The stages and tasks the graph is built from, as far as the data has them, and
    each spec's index in the data (stage index, task indexes)."""
    specs = []
    where = []
    for i, stage in _unique(data.get("stages")):
        needs = stage.get("needs")
        tasks = _unique(stage.get("tasks"))
        specs.append(
            StageSpec(
                stage["id"],
                tuple(TaskSpec(task["id"], _refs(task.get("needs"))) for _, task in tasks),
                sequential=stage.get("mode") != "parallel",
                needs=None if needs is None else _refs(needs),
            )
        )
        where.append((i, [j for j, _ in tasks]))
    return tuple(specs), where


def graph_specs(data: Mapping[str, Any]) -> tuple[StageSpec, ...]:
    """The stages and tasks the graph is built from, as far as the data has them."""
    return _specs(data)[0]


def _graph(data: Mapping[str, Any]) -> tuple[Graph | None, list[Finding]]:
    """The graph, or its problems located in the data (indexes of the data, not specs)."""
    specs, where = _specs(data)
    result = compile_graph(specs)
    if isinstance(result, Graph):
        return result, []
    found = []
    for spec_loc, text in result:
        loc = spec_loc  # spec indexes back to the data's: skipped items shift them
        if len(loc) >= 2 and loc[0] == "stages" and isinstance(loc[1], int):
            i, tasks = where[loc[1]]
            rest = loc[2:]
            if len(rest) >= 2 and rest[0] == "tasks" and isinstance(rest[1], int):
                rest = ("tasks", tasks[rest[1]], *rest[2:])
            loc = ("stages", i, *rest)
        found.append((loc, text))
    return None, found


def check_plan(data: Mapping[str, Any], version: str) -> tuple[list[Finding], Graph | None]:
    """Every cross-field problem of a ``version`` plan, and its graph when it has one."""
    found = rules.check_plan(data)
    graph, problems = _graph(data)
    if version == "v2":
        found += _v2_rules(data, graph)
    return found + problems, graph


def check_v1(data: Mapping[str, Any]) -> list[Finding]:
    """Every cross-field problem of a v1 plan; [] when there is none."""
    return check_plan(data, "v1")[0]


def check_v2(data: Mapping[str, Any]) -> list[Finding]:
    """Every cross-field problem of a v2 plan; [] when there is none."""
    return check_plan(data, "v2")[0]


def _templates(
    where: Mapping[str, Any], loc: Loc, *, task: bool, scope: templates.Scope | None = None
) -> list[Finding]:
    """Template problems at one level (defaults, a stage or a task). ``scope`` (a task's,
    with the graph) says which tasks its expressions may read; at the defaults and stage
    levels that depends on each task that inherits the value, so it is None there."""
    found: list[Finding] = []
    places: list[tuple[Loc, object, templates.Place]] = []
    check = where.get("check")
    if isinstance(check, str):
        places.append(((*loc, "check"), check, "check"))
    elif isinstance(check, Mapping):
        places.append(((*loc, "check", "run"), check.get("run"), "check"))
    env = where.get("env")
    if isinstance(env, Mapping):
        places += [((*loc, "env", name), text, "env") for name, text in env.items()]
    if task:
        places.append(((*loc, "prompt"), where.get("prompt"), "prompt"))
        places.append(((*loc, "when"), where.get("when"), "when"))
        if isinstance(where.get("for_each"), str):
            places.append(((*loc, "for_each"), where.get("for_each"), "for_each"))
    base = scope or templates.Scope(
        place="prompt", for_each=task and where.get("for_each") is not None
    )
    for place_loc, text, place in places:
        if isinstance(text, str):
            here = dataclasses.replace(base, place=place)
            found += [(place_loc, problem) for problem in templates.check(text, here)]
    return found


def _scopes(graph: Graph | None) -> Callable[[TaskKey, bool], templates.Scope]:
    """A task's scope: its upstream tasks, and bare ids that name one task."""
    if graph is None:
        return lambda key, fans_out: templates.Scope(place="prompt", for_each=fans_out)
    unique: dict[str, TaskKey | None] = {}
    for key in graph.order:
        unique[key[1]] = None if key[1] in unique else key

    def scope(key: TaskKey, fans_out: bool) -> templates.Scope:
        return templates.Scope(
            place="prompt",
            for_each=fans_out,
            upstream=lambda other: graph.is_upstream(other, key),
            task_by_id=unique.get,
        )

    return scope


def _fan_out(task: Mapping[str, Any], loc: Loc) -> list[Finding]:
    items = task.get("for_each")
    limit = task.get("max_instances")
    if not isinstance(limit, int) or isinstance(limit, bool):
        limit = values.DEFAULT_MAX_INSTANCES
    if isinstance(items, list) and len(items) > limit:
        return [
            (
                (*loc, "for_each"),
                f"for_each lists {len(items)} items, more than max_instances ({limit}); "
                f"raise max_instances (at most {values.MAX_INSTANCES}) or split the list",
            )
        ]
    return []


def _v2_rules(data: Mapping[str, Any], graph: Graph | None) -> list[Finding]:
    found: list[Finding] = []
    scope = _scopes(graph)
    defaults = data.get("defaults")
    if isinstance(defaults, Mapping):
        found += _templates(defaults, ("defaults",), task=False)
    for i, stage in _mappings(data.get("stages")):
        found += _templates(stage, ("stages", i), task=False)
        for j, task in _mappings(stage.get("tasks")):
            loc: Loc = ("stages", i, "tasks", j)
            key = (stage.get("id"), task.get("id"))
            known = graph is not None and key in graph.needs
            task_scope = scope(key, task.get("for_each") is not None) if known else None  # type: ignore[arg-type]
            found += _templates(task, loc, task=True, scope=task_scope)
            found += _fan_out(task, loc)
    return found


def size_problem(data: Mapping[str, object]) -> Finding | None:
    """What would make validation itself costly, found before anything is validated:
    more than ``rules.MAX_TASKS`` tasks, or output schemas beyond their budget (see
    ``values``)."""
    stages = data.get("stages")
    if not isinstance(stages, list):
        return None
    total = 0
    schemas: set[str] = set()
    size = 0
    for i, stage in enumerate(stages):
        tasks = stage.get("tasks") if isinstance(stage, Mapping) else None
        total += len(tasks) if isinstance(tasks, list) else 1
        if total > rules.MAX_TASKS:
            return (
                ("stages", i),
                f"the plan has more than {rules.MAX_TASKS} tasks, the limit; split it into "
                "several plans, or let for_each fan a task out at run time",
            )
        for j, task in enumerate(tasks if isinstance(tasks, list) else ()):
            schema = task.get("output_schema") if isinstance(task, Mapping) else None
            if not isinstance(schema, dict):
                continue
            try:
                text = values.schema_text(schema)
            except ValueError:
                continue  # not JSON: the model says so
            if text not in schemas:
                schemas.add(text)
                size += len(text.encode())
            if len(schemas) > values.MAX_OUTPUT_SCHEMAS or size > values.MAX_OUTPUT_SCHEMA_TOTAL:
                return (
                    ("stages", i, "tasks", j, "output_schema"),
                    f"the plan's output schemas are more than {values.MAX_OUTPUT_SCHEMAS} "
                    f"different ones or {values.MAX_OUTPUT_SCHEMA_TOTAL} bytes together (each "
                    "is checked against JSON Schema's own schema); share one with a YAML "
                    "anchor (&name, *name), which is checked once",
                )
    return None
