"""The run's task graph: nodes and edges from the resolved plan, and what each node does
once the tasks it needs are done (run, skip, fan out).

Edges: each task needs its stage's needs (by default every task of the previous stage),
in a sequential stage the task before it, and its own ``needs``. In a v1 plan the edges
only order the run (v1's ``continue`` runs every task whatever failed); in a v2 plan a
task runs when its ``when`` holds, by default ``success()``: every task it needs
succeeded. ``failure()`` holds when a task upstream (at any distance) failed,
``always()`` always; a task whose condition is false is ``skipped`` (``failure_kind:
upstream_failed`` when something upstream failed, none when the condition alone said
no). A ``for_each`` task fans out when it becomes ready: one instance per item
(``port[0]``...), each a task of its own; the tasks that need it wait for all of them,
and see them as one: ``status`` succeeded when every instance did (an empty fan-out
too), ``results``/``outputs``/``statuses`` in instance order.

Templates (prompts, prompt files, ``check.run``, ``env`` values) are rendered when their
task starts, from a context holding only what they refer to: the upstream tasks they
name, ``item``/``index`` in an instance, ``run.id``, and the runner's environment for
``env`` values only.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claude_runner.errors import ExpressionError
from claude_runner.expr import Expression, Template, parse_condition, parse_template, truthy
from claude_runner.pipeline.result import TaskResult
from claude_runner.pipeline.state import FailureKind, TaskStatus
from claude_runner.plan.resolved import ResolvedPlan, ResolvedTask

if TYPE_CHECKING:
    from claude_runner.pipeline.task import TaskRun

MAX_INSTANCES_CAP = 1000
BARRIER_MIN = 16  # a stage's shared needs from this many on go through a barrier node
DEFAULT_WHEN = "success()"
MakeRun = Callable[["Node"], "TaskRun"]


@dataclass(eq=False)
class Stage:
    """A stage's bookkeeping: its limit, its tasks' progress, its events."""

    id: str
    mode: str
    max_parallel: int | None
    nodes: list[Node] = field(default_factory=list)
    ready: deque[Node] = field(default_factory=deque)
    running: int = 0
    left: int = 0
    started: float | None = None  # monotonic time of stage_start, once emitted

    @property
    def limit(self) -> int:
        if self.mode == "sequential":
            return 1
        return self.max_parallel or len(self.nodes) or 1


@dataclass(eq=False)
class Node:
    """One task of the graph (or a fan-out, until it becomes its instances)."""

    task: ResolvedTask
    stage: Stage
    index: int  # plan order
    needs: list[Node] = field(default_factory=list)
    dependents: list[Node] = field(default_factory=list)
    waiting: int = 0  # needs not yet done
    done: bool = False
    decided: bool = False  # its condition said run (it may still wait for room)
    backoff: bool = False  # waiting out a retry delay
    instances: list[Node] | None = None  # a fan-out that expanded
    parent: Node | None = None  # an instance: its fan-out
    left_instances: int = 0
    failed_upstream: bool = False
    item: Any = None
    item_index: int | None = None
    barrier: bool = False  # not a task: stands for a stage's shared needs
    run: TaskRun = field(init=False)

    @property
    def result(self) -> TaskResult:
        return self.run.result

    @property
    def ref(self) -> str:
        if self.barrier:
            return f"{len(self.needs)} tasks before stage {self.stage.id}"
        return f"{self.task.stage_id}/{self.task.id}"


@dataclass(frozen=True)
class Run:
    """Start the task."""


@dataclass(frozen=True)
class Skip:
    reason: str
    kind: FailureKind | None


@dataclass(frozen=True)
class Expand:
    items: list[Any]


Decision = Run | Skip | Expand


def build(plan: ResolvedPlan, make_run: MakeRun) -> list[Stage]:
    """Stages and nodes with their edges (see the module docstring); ``make_run`` gives
    each node its TaskRun.

    The loader resolved each task's needs in full (its stage's needs first, then the
    task before it in a sequential stage, then its own). A stage whose tasks all wait for
    many tasks (a v1 stage after a wide one) gets one barrier node between the two: N + M
    edges instead of N x M, so two stages of 5,000 tasks cost 10,000 edges, not 25
    million."""
    stages: list[Stage] = []
    by_key: dict[tuple[str, str], Node] = {}
    index = 0
    for resolved in plan.stages:
        stage = Stage(resolved.id, resolved.mode, resolved.max_parallel)
        shared = resolved.needs
        barrier: Node | None = None
        if len(shared) >= BARRIER_MIN and len(resolved.tasks) > 1:
            barrier = Node(resolved.tasks[0], stage, index, barrier=True)
            barrier.needs = [by_key[k] for k in shared]
        for task in resolved.tasks:
            node = Node(task, stage, index)
            index += 1
            by_key[task.key] = node
            if barrier is not None and task.needs[: len(shared)] == shared:
                node.needs = [barrier, *(by_key[k] for k in task.needs[len(shared) :])]
            else:
                node.needs = [by_key[k] for k in task.needs]
            stage.nodes.append(node)
        if barrier is not None:
            _link(barrier)
        for node in stage.nodes:
            _link(node)
            node.run = make_run(node)
        stage.left = len(stage.nodes)
        stages.append(stage)
    return stages


def unordered_with(stages: list[Stage], writes: Callable[[Node], bool]) -> set[Node]:
    """The nodes that may run at the same time as a node for which ``writes`` holds:
    neither upstream nor downstream of it. Writers are few (shared tasks that are not
    read-only), so one walk up and one down per writer."""
    nodes = [n for s in stages for n in s.nodes]
    writers = [n for n in nodes if not n.barrier and writes(n)]
    found: set[Node] = set()
    for writer in writers:
        ordered = _reach(writer, lambda n: n.needs) | _reach(writer, lambda n: n.dependents)
        found.update(n for n in nodes if n not in ordered and not n.barrier)
    return found


def _reach(start: Node, step: Callable[[Node], list[Node]]) -> set[Node]:
    seen = {start}
    pending = [start]
    while pending:
        for nxt in step(pending.pop()):
            if nxt not in seen:
                seen.add(nxt)
                pending.append(nxt)
    return seen


def _link(node: Node) -> None:
    for need in node.needs:
        need.dependents.append(node)
    node.waiting = len(node.needs)


def _aggregate(statuses: list[TaskStatus]) -> str:
    if all(s == TaskStatus.SUCCEEDED for s in statuses):
        return "succeeded"
    if any(s == TaskStatus.FAILED for s in statuses):
        return "failed"
    if any(s == TaskStatus.CANCELLED for s in statuses):
        return "cancelled"
    return "skipped"


def succeeded(node: Node) -> bool:
    """The node counts as a success for ``success()``: the task succeeded, or a
    fan-out's instances (a barrier's tasks) all did (none: vacuously)."""
    if node.barrier:
        return all(succeeded(n) for n in node.needs)
    if node.instances is not None:
        return all(succeeded(i) for i in node.instances)
    return node.result.status == TaskStatus.SUCCEEDED


def failed(node: Node) -> bool:
    if node.barrier:
        return any(failed(n) for n in node.needs)
    if node.instances is not None:
        return any(failed(i) for i in node.instances)
    return node.result.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)


def view(node: Node) -> dict[str, Any]:
    """What a template sees of a finished task (or fan-out)."""
    if node.instances is not None:
        results = [i.result for i in node.instances]
        return {
            "status": _aggregate([r.status for r in results]),
            "failure_kind": None,
            "results": [r.result for r in results],
            "outputs": [r.output for r in results],
            "statuses": [str(r.status) for r in results],
            "cost_usd": round(sum(r.total_cost_usd or 0.0 for r in results), 6),
        }
    r = node.result
    return {
        "status": str(r.status),
        "failure_kind": None if r.failure_kind is None else str(r.failure_kind),
        "result": r.result,
        "output": r.output,
        "branch": r.branch,
        "patch": r.patch,
        "cost_usd": r.total_cost_usd,
        "session_id": r.session_id,
    }


class Semantics:
    """What ready nodes do, and how their templates render, for one run."""

    def __init__(self, *, version: str, run_id: str) -> None:
        self._version = version
        self._run_id = run_id
        self._make_run: MakeRun | None = None
        self._by_id: dict[str, list[Node]] = {}
        self._by_key: dict[tuple[str, str], Node] = {}
        self._conditions: dict[str, Expression] = {}
        self._templates: dict[str, Template] = {}

    def index(self, stages: list[Stage], make_run: MakeRun) -> None:
        """Know the run's nodes (templates name them), and how instances get runs."""
        self._make_run = make_run
        for stage in stages:
            for node in stage.nodes:
                self._by_id.setdefault(node.task.id, []).append(node)
                self._by_key[node.task.key] = node

    def _condition(self, text: str) -> Expression:
        found = self._conditions.get(text)
        if found is None:
            found = self._conditions[text] = parse_condition(text)
        return found

    def _template(self, text: str) -> Template:
        found = self._templates.get(text)
        if found is None:
            found = self._templates[text] = parse_template(text)
        return found

    # --- the context -----------------------------------------------------------------
    def context(self, node: Node, refs: frozenset[tuple[Any, ...]]) -> dict[str, Any]:
        """The template context of ``node``, holding what ``refs`` names."""
        tasks: dict[str, Any] = {}
        stages: dict[str, Any] = {}
        for path in refs:
            if len(path) >= 2 and path[0] == "tasks" and isinstance(path[1], str):
                target = self._resolve_id(node, path[1])
                if target is not None and target.done:
                    tasks[path[1]] = view(target)
            elif len(path) >= 4 and path[0] == "stages" and path[2] == "tasks":
                target = self._by_key.get((str(path[1]), str(path[3])))
                if target is not None and target.done:
                    stages.setdefault(path[1], {"tasks": {}})["tasks"][path[3]] = view(target)
        ctx: dict[str, Any] = {"tasks": tasks, "stages": stages, "run": {"id": self._run_id}}
        if node.item_index is not None:
            ctx["item"], ctx["index"] = node.item, node.item_index
        return ctx

    def _resolve_id(self, node: Node, task_id: str) -> Node | None:
        candidates = self._by_id.get(task_id, [])
        if len(candidates) == 1:
            return candidates[0]
        same_stage = [c for c in candidates if c.stage is node.stage]
        return same_stage[0] if same_stage else None

    def _functions(self, node: Node) -> dict[str, Callable[[], object]]:
        return {
            "success": lambda: all(succeeded(n) for n in node.needs),
            "failure": lambda: node.failed_upstream,
            "always": lambda: True,
        }

    # --- decisions ---------------------------------------------------------------------
    def runs_after_abort(self, node: Node) -> bool:
        """A task whose ``when`` calls ``always()`` still runs after a ``fail_fast`` (in
        a v2 plan: v1 tasks resolve to ``always()``, with v1's meaning)."""
        if self._version == "v1":
            return False
        try:
            return "always" in self._condition(node.task.when).function_names()
        except ExpressionError:
            return False

    def decide(self, node: Node) -> Decision:
        """What the ready ``node`` does (see the module docstring)."""
        node.failed_upstream = any(n.failed_upstream or failed(n) for n in node.needs)
        if self._version == "v1":
            return Run()
        task = node.task
        default = task.when.strip() == DEFAULT_WHEN
        try:
            if default:
                ok = all(succeeded(n) for n in node.needs)
            else:
                expr = self._condition(task.when)
                ctx = self.context(node, expr.references())
                ok = truthy(expr.evaluate(ctx, self._functions(node)))
        except ExpressionError as exc:
            return Skip(f"when: {exc}", FailureKind.SETUP_FAILED)
        if not ok:
            if default:
                bad = next(n for n in node.needs if not succeeded(n))
                kind = FailureKind.UPSTREAM_FAILED if node.failed_upstream else None
                return Skip(f"needs {bad.ref}, which did not succeed", kind)
            return Skip("condition false", None)
        if task.for_each is not None and node.parent is None:
            return self._fan_out(node)
        return Run()

    def _fan_out(self, node: Node) -> Decision:
        task = node.task
        items: Any = task.for_each
        if isinstance(items, str):
            try:
                expr = self._template(items).single_expression
                if expr is None:
                    return Skip("for_each must be one ${{ }} expression", FailureKind.SETUP_FAILED)
                items = expr.evaluate(self.context(node, expr.references()))
            except ExpressionError as exc:
                return Skip(f"for_each: {exc}", FailureKind.SETUP_FAILED)
        if not isinstance(items, list | tuple):
            return Skip(
                f"for_each gave {type(items).__name__}, not a list", FailureKind.SETUP_FAILED
            )
        limit = min(task.max_instances, MAX_INSTANCES_CAP)
        if len(items) > limit:
            return Skip(
                f"for_each gave {len(items)} items, more than max_instances ({limit})",
                FailureKind.SETUP_FAILED,
            )
        return Expand(list(items))

    def instances(self, node: Node, items: list[Any]) -> list[Node]:
        """The fan-out's instances: tasks ``<id>[i]`` of the same stage, already ready."""
        made = []
        for i, item in enumerate(items):
            task = dataclasses.replace(node.task, id=f"{node.task.id}[{i}]", for_each=None)
            inst = Node(task, node.stage, node.index, parent=node, item=item, item_index=i)
            inst.failed_upstream = node.failed_upstream
            assert self._make_run is not None  # noqa: S101 - index() came first
            inst.run = self._make_run(inst)
            made.append(inst)
            self._by_key[task.key] = inst
        node.instances = made
        node.left_instances = len(made)
        return made

    def render(
        self,
        node: Node,
        text: str,
        *,
        quoted: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """``text`` with its ``${{ }}`` rendered for ``node`` (values shell-quoted for a
        command; ``env`` only for env values). Raises ExpressionError."""
        template = self._template(text)
        if template.is_static:
            return text
        ctx = self.context(node, template.references())
        if env is not None:
            ctx["env"] = dict(env)
        return template.render(ctx, quote=shlex.quote if quoted else None)


@dataclass(frozen=True)
class NodeTemplates:
    """A node's template rendering, as its TaskRun uses it."""

    semantics: Semantics
    node: Node
    env: Mapping[str, str]  # the runner's environment, for ${{ env.NAME }} in env values

    def prompt(self, text: str) -> str:
        return self.semantics.render(self.node, text)

    def command(self, text: str) -> str:
        return self.semantics.render(self.node, text, quoted=True)

    def env_value(self, text: str) -> str:
        return self.semantics.render(self.node, text, env=self.env)
