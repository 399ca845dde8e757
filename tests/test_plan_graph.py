"""The task graph (plan/graph.py) on its own: refs, defaults, cycles, layers, bounds, and
properties over random plans; and the template seam (plan/templates.py)."""

from __future__ import annotations

import itertools
import random
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_runner.errors import PlanError
from claude_runner.plan import templates
from claude_runner.plan.graph import MAX_EDGES, Graph, StageSpec, TaskSpec, compile_graph
from claude_runner.plan.loader import load_plan


def _graph(stages: list[StageSpec]) -> Graph:
    graph = compile_graph(stages)
    assert isinstance(graph, Graph), graph
    return graph


def _problems(stages: list[StageSpec]) -> list[tuple[tuple[str | int, ...], str]]:
    found = compile_graph(stages)
    assert isinstance(found, list), found
    return found


def test_refs_of_every_form() -> None:
    stages = [
        StageSpec("a", (TaskSpec("x"), TaskSpec("y")), sequential=False),
        StageSpec("b", (TaskSpec("x"),), needs=()),
        StageSpec(
            "c",
            (TaskSpec("t1", ("a/x",)), TaskSpec("t2", ("a/*",)), TaskSpec("t3", ("y", "b"))),
            sequential=False,
            needs=(),
        ),
    ]
    graph = _graph(stages)
    assert graph.needs[("c", "t1")] == (("a", "x"),)
    assert graph.needs[("c", "t2")] == (("a", "x"), ("a", "y"))
    # a bare name: the task when one task has that id (y), else the stage (b)
    assert graph.needs[("c", "t3")] == (("a", "y"), ("b", "x"))


def test_a_unique_task_id_wins_over_a_stage_of_that_name() -> None:
    stages = [
        StageSpec("build", (TaskSpec("x"),)),
        StageSpec("s", (TaskSpec("build"),), needs=()),
        StageSpec("t", (TaskSpec("u", ("build",)),), needs=()),
    ]
    assert _graph(stages).needs[("t", "u")] == (("s", "build"),)


def test_problems_are_all_reported_with_their_place() -> None:
    stages = [
        StageSpec("build", (TaskSpec("compile"),)),
        StageSpec("x", (TaskSpec("t"),)),
        StageSpec("y", (TaskSpec("t"),)),
        StageSpec("test", (TaskSpec("unit", ("buidl/compile", "compil", "t", "test/unit")),)),
    ]
    assert _problems(stages) == [
        (
            ("stages", 3, "tasks", 0, "needs", 0),
            "needs 'buidl/compile': no stage 'buidl' (did you mean 'build'?)",
        ),
        (
            ("stages", 3, "tasks", 0, "needs", 1),
            "needs 'compil': no task or stage has this id (did you mean 'compile'?)",
        ),
        (
            ("stages", 3, "tasks", 0, "needs", 2),
            "needs 't': several tasks have this id (x/t, y/t); write stage/task",
        ),
        (("stages", 3, "tasks", 0, "needs"), "task 'unit' needs itself"),
    ]


def test_cycles_print_their_path() -> None:
    stages = [
        StageSpec("a", (TaskSpec("x", ("c/z",)),), needs=()),
        StageSpec("b", (TaskSpec("y"),)),
        StageSpec("c", (TaskSpec("z"),)),
    ]
    assert _problems(stages) == [
        (
            ("stages", 0, "tasks", 0),
            "the needs form a cycle: a/x -> c/z -> b/y -> a/x (each needs the next); no task "
            "of it could start",
        )
    ]


def test_the_edge_limit_is_checked_before_the_edges_are_built() -> None:
    wide = tuple(TaskSpec(f"w{i}") for i in range(1100))
    chain = tuple(TaskSpec(f"c{i}") for i in range(1000))
    [(loc, message)] = _problems(
        [StageSpec("a", wide, sequential=False), StageSpec("b", chain, sequential=True)]
    )
    assert loc[:2] == ("stages", 1)
    assert message.startswith(f"the plan's tasks need more than {MAX_EDGES} tasks in all")


def test_tasks_with_the_same_needs_share_one_tuple() -> None:
    wide = tuple(TaskSpec(f"w{i}") for i in range(900))
    graph = _graph([StageSpec("a", wide, sequential=False), StageSpec("b", wide, sequential=False)])
    assert graph.edge_count == 810_000
    assert len({id(graph.needs[("b", t.id)]) for t in wide}) == 1  # one tuple, not 900


def test_upstream_is_transitive() -> None:
    graph = _graph(
        [
            StageSpec("a", (TaskSpec("x"), TaskSpec("y"))),
            StageSpec("b", (TaskSpec("z"),), needs=("a/x",)),
            StageSpec("c", (TaskSpec("w"),)),
        ]
    )
    assert graph.upstream(("c", "w")) == {("b", "z"), ("a", "x")}
    assert graph.upstream(("a", "y")) == {("a", "x")}  # the sequential chain


# --- properties ---------------------------------------------------------------------------


@st.composite
def random_plans(draw: st.DrawFn) -> list[StageSpec]:
    """Stages of unique tasks whose needs point anywhere (cycles included)."""
    shape = draw(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5))
    keys = [(f"s{i}", f"t{i}_{j}") for i, n in enumerate(shape) for j in range(n)]
    refs = st.sampled_from([f"{s}/{t}" for s, t in keys] + [f"s{i}/*" for i in range(len(shape))])
    stages = []
    for i, n in enumerate(shape):
        tasks = tuple(
            TaskSpec(f"t{i}_{j}", tuple(draw(st.lists(refs, max_size=2)))) for j in range(n)
        )
        needs = draw(st.one_of(st.none(), st.just(()), st.lists(refs, max_size=2).map(tuple)))
        stages.append(StageSpec(f"s{i}", tasks, sequential=draw(st.booleans()), needs=needs))
    return stages


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(stages=random_plans())
def test_layers_order_every_edge_or_a_cycle_is_real(stages: list[StageSpec]) -> None:
    result = compile_graph(stages)
    if isinstance(result, Graph):
        for key, needs in result.needs.items():
            assert key not in needs
            assert len(set(needs)) == len(needs)
            for need in needs:
                assert result.layers[need] < result.layers[key]
            assert result.layers[key] == (max((result.layers[n] for n in needs), default=-1) + 1)
        return
    for _, message in result:
        if "cycle" not in message:
            assert "needs itself" in message, message
            continue
        ring = message.split(": ", 1)[1].split(" (")[0].split(" -> ")
        assert ring[0] == ring[-1]
        # every step of the printed cycle is a real need
        full = _graph_without_cycle_check(stages)
        for here, there in itertools.pairwise(ring):
            assert tuple(there.split("/")) in full[tuple(here.split("/"))]


def _graph_without_cycle_check(
    stages: list[StageSpec],
) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    """Needs as the graph resolves them, computed independently (slowly) from the specs."""
    tasks = {s.id: [t.id for t in s.tasks] for s in stages}

    def refs(items: tuple[str, ...]) -> set[tuple[str, ...]]:
        out: set[tuple[str, ...]] = set()
        for ref in items:
            stage, _, task = ref.partition("/")
            out |= {(stage, t) for t in tasks[stage]} if task == "*" else {(stage, task)}
        return out

    needs: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    previous: set[tuple[str, ...]] = set()
    for stage in stages:
        base = previous if stage.needs is None else refs(stage.needs)
        prev_task: set[tuple[str, ...]] = set()
        for task in stage.tasks:
            needs[(stage.id, task.id)] = base | prev_task | refs(task.needs)
            if stage.sequential:
                prev_task = {(stage.id, task.id)}
        previous = {(stage.id, t) for t in tasks[stage.id]}
    return needs


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(stages=random_plans())
def test_needs_are_the_union_the_spec_defines(stages: list[StageSpec]) -> None:
    result = compile_graph(stages)
    if not isinstance(result, Graph):
        return
    expected = _graph_without_cycle_check(stages)
    assert {k: set(v) for k, v in result.needs.items()} == expected


def test_ten_thousand_tasks_compile() -> None:
    rng = random.Random(7)  # noqa: S311 - a seeded shape, not a secret
    stages: list[StageSpec] = []
    names: list[str] = []
    for s in range(100):
        tasks = tuple(
            TaskSpec(f"t{s}_{t}", tuple(rng.sample(names, 3)) if names else ()) for t in range(100)
        )
        names += [t.id for t in tasks]
        stages.append(StageSpec(f"s{s}", tasks, sequential=False, needs=()))
    graph = _graph(stages)
    assert len(graph.order) == 10_000
    assert graph.edge_count == 9_900 * 3


# --- through the loader ----------------------------------------------------------------------


def test_graph_problems_point_at_the_ref_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: v2
            stages:
              - id: a
                tasks:
                  - id: x
                    prompt: hi
                    needs:
                      - b/y
              - id: b
                tasks: [{id: y, prompt: hi}]
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    [p] = caught.value.problems
    assert (p.line, p.column, p.location) == (5, 9, "stages[0].tasks[0]")
    assert p.message.startswith("the needs form a cycle: a/x -> b/y -> a/x")


# --- the template seam -------------------------------------------------------------------------

PROMPT = templates.Scope(place="prompt")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("a ${{ run.id }} b ${{ tasks.y.z }}", None),
        ("${{", "'${{' at character 1 is not closed by '}}'"),
        ("a ${{ }} b", "the expression at character 3 is empty: write one inside '${{ }}'"),
        ("${{" + "x" * 5000 + "}}", "the expression at character 1 is longer than 4096 characters"),
    ],
)
def test_template_structure(text: str, problem: str | None) -> None:
    assert templates.check(text, PROMPT) == ([] if problem is None else [problem])


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("${{ tasks.a.output }}", True),
        (" ${{ run.id }} ", True),
        ("a ${{ run.id }}", False),
        ("x", False),
    ],
)
def test_for_each_is_one_expression(text: str, ok: bool) -> None:
    assert (templates.check(text, templates.Scope(place="for_each")) == []) == ok


SEAM = "needs claude_runner.expr behind plan.templates.check (the seam)"


def test_unknown_context_roots_are_refused() -> None:
    assert templates.check("${{ secrets.TOKEN }}", PROMPT)


def test_env_is_only_for_env_values() -> None:
    assert templates.check("${{ env.HOME }}", PROMPT)
    assert not templates.check("${{ env.HOME }}", templates.Scope(place="env"))


def test_item_only_in_a_fan_out_task() -> None:
    assert templates.check("${{ item }}", PROMPT)
    assert not templates.check("${{ item }}", templates.Scope(place="prompt", for_each=True))


def test_refs_to_tasks_that_are_not_upstream_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "version: v2\nstages:\n  - id: a\n    needs: []\n    tasks: [{id: x, prompt: hi}]\n"
        "  - id: b\n    needs: []\n    tasks: [{id: y, prompt: '${{ tasks.x.result }}'}]\n",
        encoding="utf-8",
    )
    with pytest.raises(PlanError, match="not upstream"):
        load_plan(path)


def test_expression_syntax_errors_are_refused() -> None:
    assert templates.check("${{ a == }}", PROMPT)


def test_repeated_stage_refs_stop_at_the_edge_limit_before_expanding() -> None:
    tasks = tuple(TaskSpec(f"t{i}", ("s/*",)) for i in range(2000))
    [*_, (loc, message)] = _problems([StageSpec("s", tasks, sequential=False)])
    assert loc == ("stages", 0, "tasks", 500)  # 500 tasks x 2,000 refs: the limit
    assert message.startswith(f"the plan's tasks need more than {MAX_EDGES} tasks in all")
