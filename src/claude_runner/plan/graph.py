"""The task graph of a plan: every ``needs`` resolved, cycles found, layers numbered.

Pure: stages and tasks in, a ``Graph`` or every problem (with its location in the plan)
out. Nodes are keyed ``(stage_id, task_id)``. A task's needs are, in this order and
without repeats:

* its stage's needs: the stage's ``needs`` refs or, when the stage has no ``needs`` key,
  every task of the previous stage (v1's rule); ``needs: []`` is none;
* in a sequential stage, the previous task of the stage;
* the task's own ``needs`` refs.

A ref is ``stage/task`` (that task), ``stage/*`` (every task of the stage), or a bare
``name``: the task with that id when exactly one task in the plan has it, else the stage
with that id. The layer of a task is 0 without needs, else one more than the highest
layer among its needs.

Cost: linear in tasks plus edges. Tasks with the same needs share one tuple, so a
parallel stage after a wide one costs one tuple, not one per task; the edge count is
still bounded (``MAX_EDGES``): a scheduler would pay for each.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from claude_runner.plan.rules import echo

TaskKey = tuple[str, str]  # (stage_id, task_id)
Loc = tuple[str | int, ...]
Finding = tuple[Loc, str]

MAX_EDGES = 1_000_000


@dataclass(frozen=True)
class TaskSpec:
    id: str
    needs: tuple[str, ...] = ()  # refs as written


@dataclass(frozen=True)
class StageSpec:
    id: str
    tasks: tuple[TaskSpec, ...]
    sequential: bool = True
    needs: tuple[str, ...] | None = None  # None: the previous stage's tasks


@dataclass(frozen=True)
class Graph:
    """Every task's resolved needs and topological layer, in plan order."""

    order: tuple[TaskKey, ...]
    needs: Mapping[TaskKey, tuple[TaskKey, ...]]
    layers: Mapping[TaskKey, int]
    stage_needs: Mapping[str, tuple[TaskKey, ...]]
    _bits: dict[TaskKey, int] = field(default_factory=dict, repr=False)
    _pos: dict[TaskKey, int] = field(default_factory=dict, repr=False)

    @property
    def edge_count(self) -> int:
        return sum(len(n) for n in self.needs.values())

    def by_layer(self) -> list[list[TaskKey]]:
        """Tasks grouped by layer, each group in plan order."""
        out: list[list[TaskKey]] = [[] for _ in range(max(self.layers.values(), default=-1) + 1)]
        for key in self.order:
            out[self.layers[key]].append(key)
        return out

    def is_upstream(self, other: TaskKey, key: TaskKey) -> bool:
        """Whether ``key`` needs ``other``, directly or through others."""
        bits = self._upstream_bits()
        return bool(bits[key] >> self._pos[other] & 1)

    def upstream(self, key: TaskKey) -> frozenset[TaskKey]:
        """Every task ``key`` needs, directly or through others."""
        bits = self._upstream_bits()[key]
        return frozenset(k for i, k in enumerate(self.order) if bits >> i & 1)

    def _upstream_bits(self) -> dict[TaskKey, int]:
        """Each task's upstream set as an integer bitset over plan order, computed once
        for the whole graph in layer order. A set per task would hold N^2/2 entries for
        a chain of N tasks (2.3 GB at 10,000); bitsets take N^2/16 bytes and one C-level
        OR per edge."""
        if not self._bits:
            pos = self._pos
            pos.update((k, i) for i, k in enumerate(self.order))
            for key in sorted(self.order, key=self.layers.__getitem__):
                acc = 0
                for need in self.needs[key]:
                    acc |= self._bits[need] | (1 << pos[need])
                self._bits[key] = acc
        return self._bits


class _Index:
    """Where a ref may point: stages, tasks per stage, tasks by bare id."""

    def __init__(self, stages: Sequence[StageSpec]) -> None:
        self.stage_tasks: dict[str, tuple[TaskKey, ...]] = {}
        self.by_id: dict[str, list[TaskKey]] = {}
        for stage in stages:
            keys = tuple((stage.id, t.id) for t in stage.tasks)
            self.stage_tasks.setdefault(stage.id, keys)
            for key in keys:
                self.by_id.setdefault(key[1], []).append(key)

    def resolve(self, ref: str) -> tuple[TaskKey, ...] | str:  # noqa: PLR0911
        """The tasks ``ref`` names, or why it names none."""
        stage, slash, task = ref.partition("/")
        if slash:
            keys = self.stage_tasks.get(stage)
            if keys is None:
                return f"needs {echo(ref)}: no stage {echo(stage)}{_close(stage, self.stage_tasks)}"
            if task == "*":
                return keys
            if (stage, task) in keys:
                return ((stage, task),)
            names = [k[1] for k in keys]
            return (
                f"needs {echo(ref)}: stage {stage!r} has no task {echo(task)}{_close(task, names)}"
            )
        tasks = self.by_id.get(ref, [])
        if len(tasks) == 1:
            return (tasks[0],)
        if ref in self.stage_tasks:
            return self.stage_tasks[ref]
        if tasks:
            where = ", ".join(f"{s}/{t}" for s, t in tasks[:5])
            return f"needs {echo(ref)}: several tasks have this id ({where}); write stage/task"
        return f"needs {echo(ref)}: no task or stage has this id{_close(ref, self.known())}"

    def known(self) -> list[str]:
        return [*self.stage_tasks, *self.by_id]


def _close(word: str, choices: Sequence[str] | Mapping[str, object]) -> str:
    found = difflib.get_close_matches(word[:100], list(choices)[:5000], n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _union(
    base: tuple[TaskKey, ...], previous: tuple[TaskKey, ...], own: tuple[TaskKey, ...]
) -> tuple[TaskKey, ...]:
    """``base + previous + own`` without repeats; the first two never share a task (the
    previous task is in this stage, the stage's needs are not)."""
    out = base + previous
    if own:
        seen = set(out)
        out += tuple(k for k in own if k not in seen)
    return out


def compile_graph(stages: Sequence[StageSpec]) -> Graph | list[Finding]:
    """The graph of ``stages``, or every problem found (unknown, ambiguous and self refs,
    cycles, too many edges), located as ``('stages', i, 'tasks', j, 'needs', k)``."""
    index = _Index(stages)
    found: list[Finding] = []
    needs: dict[TaskKey, tuple[TaskKey, ...]] = {}
    stage_needs: dict[str, tuple[TaskKey, ...]] = {}
    order: list[TaskKey] = []
    previous: tuple[TaskKey, ...] = ()
    edges = 0
    for i, stage in enumerate(stages):
        if stage.needs is None:
            base = previous
        else:
            stage_refs = _refs(index, stage.needs, ("stages", i), found, MAX_EDGES - edges)
            if stage_refs is None:
                return [*found, _too_many_edges(("stages", i, "needs"))]
            base = stage_refs
        own_keys = {(stage.id, t.id) for t in stage.tasks}
        if stage.needs is not None and own_keys & set(base):
            found.append(
                (
                    ("stages", i, "needs"),
                    f"stage {stage.id!r} needs itself; a stage can need only other stages' tasks",
                )
            )
            base = tuple(k for k in base if k not in own_keys)
        stage_needs[stage.id] = base
        prev_task: tuple[TaskKey, ...] = ()
        for j, task in enumerate(stage.tasks):
            key = (stage.id, task.id)
            loc: Loc = ("stages", i, "tasks", j)
            own = _refs(index, task.needs, loc, found, MAX_EDGES - edges) if task.needs else ()
            if own is None:
                return [*found, _too_many_edges(loc)]
            if key in own:
                found.append(((*loc, "needs"), f"task {task.id!r} needs itself"))
                own = tuple(k for k in own if k != key)
            edges += len(base) + len(prev_task) + len(own)  # checked before building
            if edges > MAX_EDGES:
                return [*found, _too_many_edges(loc)]
            mine = _union(base, prev_task, own) if (prev_task or own) else base
            needs[key] = mine
            order.append(key)
            if stage.sequential:
                prev_task = (key,)
        previous = tuple((stage.id, t.id) for t in stage.tasks)
    if found:
        return found
    layers = _layers(order, needs)
    if isinstance(layers, list):
        return [_cycle_finding(layers, stages)]
    return Graph(tuple(order), needs, layers, stage_needs)


def _too_many_edges(loc: Loc) -> Finding:
    return (
        loc,
        f"the plan's tasks need more than {MAX_EDGES} tasks in all, the limit (each task of "
        "a stage needs every task of the stage before, unless told otherwise); put a stage "
        "with one task between wide stages, or narrow the needs",
    )


def _refs(
    index: _Index, refs: tuple[str, ...], loc: Loc, found: list[Finding], room: int
) -> tuple[TaskKey, ...] | None:
    """The tasks ``refs`` name, without repeats; None when they are more than ``room``
    (the edges left under ``MAX_EDGES``: ``stage/*`` repeated must not cost more)."""
    out: dict[TaskKey, None] = {}
    for k, ref in enumerate(refs):
        keys = index.resolve(ref)
        if isinstance(keys, str):
            found.append(((*loc, "needs", k), keys))
            continue
        if len(out) + len(keys) > room:
            return None
        out.update(dict.fromkeys(keys))
    return tuple(out)


def _layers(
    order: list[TaskKey], needs: Mapping[TaskKey, tuple[TaskKey, ...]]
) -> dict[TaskKey, int] | list[TaskKey]:
    """Layer of every task, or a cycle (as the list of its tasks) when there is one."""
    layers: dict[TaskKey, int] = {}
    shared: dict[int, int] = {}  # id(needs tuple) -> its highest layer, for shared tuples
    state: dict[TaskKey, int] = {}  # 1: on the path, 2: done
    for root in order:
        if root in layers:
            continue
        path: list[TaskKey] = [root]
        iters = [iter(needs[root])]
        state[root] = 1
        while path:
            for need in iters[-1]:
                mark = state.get(need)
                if mark == 2:
                    continue
                if mark == 1:
                    return path[path.index(need) :]
                state[need] = 1
                path.append(need)
                iters.append(iter(needs[need]))
                break
            else:
                top = path.pop()
                iters.pop()
                mine = needs[top]
                if not mine:
                    layers[top] = 0
                else:
                    high = shared.get(id(mine))
                    if high is None:
                        high = max(layers[n] for n in mine)
                        shared[id(mine)] = high
                    layers[top] = high + 1
                state[top] = 2
    return layers


def _cycle_finding(cycle: list[TaskKey], stages: Sequence[StageSpec]) -> Finding:
    position = {(s.id, t.id): (i, j) for i, s in enumerate(stages) for j, t in enumerate(s.tasks)}
    first = min(cycle, key=lambda k: position[k])
    start = cycle.index(first)
    # The path goes from a task to one it needs; print it as "x waits for y".
    ring = [*cycle[start:], *cycle[:start], first]
    text = " -> ".join(f"{s}/{t}" for s, t in ring)
    i, j = position[first]
    return (
        ("stages", i, "tasks", j),
        f"the needs form a cycle: {text} (each needs the next); no task of it could start",
    )
