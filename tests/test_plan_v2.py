"""Plan v2: the cascade of every new key, defaults, the one resolved shape for v1 and v2,
the dry-run document and the graph renderers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from claude_runner.errors import PlanError
from claude_runner.plan import values
from claude_runner.plan.loader import load_plan
from claude_runner.plan.models import resolve
from claude_runner.plan.models_v2 import PlanV2
from claude_runner.plan.resolved import (
    NO_CONTROLS,
    NO_RETRIES,
    Check,
    ConfigSource,
    ResolvedPlan,
    ResolvedTask,
    Retries,
)
from claude_runner.plan.schema import dry_run_document, render_graph

PLANS = Path(__file__).parent / "data" / "plans"


def _resolve(tmp_path: Path, text: str, cli_model: str | None = None) -> ResolvedPlan:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return resolve(load_plan(path), cli_model=cli_model)


def _task(plan: ResolvedPlan, task_id: str) -> ResolvedTask:
    [task] = [t for t in plan.tasks if t.id == task_id]
    return task


# --- defaults and the cascade ---------------------------------------------------------------


def test_v2_defaults_leave_no_run_without_limits(tmp_path: Path) -> None:
    task = _resolve(tmp_path, "version: v2\nstages: [{id: s, tasks: [{id: t, prompt: hi}]}]")
    assert task_summary(task.tasks[0]) == {
        "timeout_s": 7200,
        "idle_timeout_s": 1200,
        "retries": Retries(2, ("rate_limited", "api_error", "crash", "idle_timeout"), 5, 120),
        "when": "success()",
        "check": None,
        "env": (),
        "controls": NO_CONTROLS,
        "max_instances": 64,
    }


def task_summary(task: ResolvedTask) -> dict[str, object]:
    return {
        "timeout_s": task.timeout_s,
        "idle_timeout_s": task.idle_timeout_s,
        "retries": task.retries,
        "when": task.when,
        "check": task.check,
        "env": task.env,
        "controls": task.controls,
        "max_instances": task.max_instances,
    }


CASCADE = """
version: v2
defaults:
  model: haiku
  timeout: 1h
  retries: 5
  max_turns: 10
  allowed_tools: [Read, Edit]
  env: {A: defaults, B: defaults, C: defaults}
  check: make test
stages:
  - id: s
    timeout: 30m
    retries: {on: [crash]}
    allowed_tools: [Bash]
    env: {B: stage, D: stage}
    tasks:
      - id: inherits
        prompt: hi
      - id: overrides
        prompt: hi
        model: claude-opus-4-1
        timeout: 0
        retries: null
        max_turns: 3
        allowed_tools: null
        env: {C: task, D: null}
        check: {run: pytest, attempts: 1, timeout: 90}
"""


def test_the_most_specific_level_wins_and_null_inherits(tmp_path: Path) -> None:
    plan = _resolve(tmp_path, CASCADE)
    inherits, overrides = _task(plan, "inherits"), _task(plan, "overrides")
    assert (inherits.model, inherits.timeout_s, inherits.controls.max_turns) == ("haiku", 1800, 10)
    assert (overrides.model, overrides.timeout_s, overrides.controls.max_turns) == (
        "claude-opus-4-1",
        None,  # 0: no limit
        3,
    )
    # lists replace, they do not merge; null inherits the stage's
    assert inherits.controls.allowed_tools == ("Bash",)
    assert overrides.controls.allowed_tools == ("Bash",)
    # a retries mapping replaces the level above; what it leaves out is the built-in default
    assert inherits.retries == Retries(2, ("crash",), 5, 120)
    assert overrides.retries == Retries(2, ("crash",), 5, 120)  # null: the stage's


def test_env_merges_name_by_name_and_null_inherits_a_name(tmp_path: Path) -> None:
    plan = _resolve(tmp_path, CASCADE)
    assert _task(plan, "inherits").env == (
        ("A", "defaults"),
        ("B", "stage"),
        ("C", "defaults"),
        ("D", "stage"),
    )
    assert _task(plan, "overrides").env == (
        ("A", "defaults"),
        ("B", "stage"),
        ("C", "task"),
        ("D", "stage"),
    )


def test_check_shorthand_and_long_form(tmp_path: Path) -> None:
    plan = _resolve(tmp_path, CASCADE)
    assert _task(plan, "inherits").check == Check("make test", 3, None)
    assert _task(plan, "overrides").check == Check("pytest", 1, 90)


@pytest.mark.parametrize(
    ("given", "retries"),
    [
        ("0", Retries(0, values.DEFAULT_RETRY_ON, 5, 120)),
        ("4", Retries(4, values.DEFAULT_RETRY_ON, 5, 120)),
        ("{max: 1, on: []}", Retries(1, (), 5, 120)),
        ("{backoff: {base: 1s}}", Retries(2, values.DEFAULT_RETRY_ON, 1, 120)),
        ("{backoff: {max: 10m}, on: [crash, crash]}", Retries(2, ("crash",), 5, 600)),
    ],
)
def test_retries_shorthand_and_long_form(tmp_path: Path, given: str, retries: Retries) -> None:
    plan = _resolve(
        tmp_path,
        f"version: v2\nstages: [{{id: s, tasks: [{{id: t, prompt: hi, retries: {given}}}]}}]",
    )
    assert plan.tasks[0].retries == retries


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("0", None),
        ("90", 90),
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h1s", 3601),
    ],
)
def test_durations(tmp_path: Path, given: str, seconds: int | None) -> None:
    plan = _resolve(
        tmp_path,
        f"version: v2\nstages: [{{id: s, tasks: [{{id: t, prompt: hi, timeout: {given}}}]}}]",
    )
    assert plan.tasks[0].timeout_s == seconds


def test_cli_model_sits_between_stage_and_defaults(tmp_path: Path) -> None:
    text = """
    version: v2
    defaults: {model: haiku}
    stages:
      - id: a
        tasks: [{id: plain, prompt: hi}, {id: own, prompt: hi, model: opus}]
      - id: b
        model: claude-sonnet-4-5
        tasks: [{id: staged, prompt: hi}]
    """
    plan = _resolve(tmp_path, text, cli_model="sonnet")
    assert [t.model for t in plan.tasks] == ["sonnet", "opus", "claude-sonnet-4-5"]


def test_agent_controls_and_plan_wide_keys(tmp_path: Path) -> None:
    plan = resolve(load_plan(PLANS / "valid" / "v2_everything.yaml"))
    assert (plan.version, plan.max_concurrency, plan.timeout_s, plan.budget_usd) == (
        "v2",
        8,
        6 * 3600,
        25.0,
    )
    controls = _task(plan, "planner").controls
    assert controls.permission_mode == "acceptEdits"
    assert controls.mcp_config == ConfigSource(file=None, inline_json='{"mcpServers":{}}')
    assert controls.settings == ConfigSource(file=".claude/settings.json", inline_json=None)
    assert controls.add_dirs == ("/opt/data", "../shared")
    assert controls.fallback_model == "claude-haiku-4-5"
    assert _task(plan, "reviewer").controls.permission_mode == "plan"
    planner = _task(plan, "planner")
    assert planner.output_schema == {
        "type": "object",
        "properties": {"modules": {"type": "array", "items": {"type": "string"}}},
        "required": ["modules"],
    }
    assert planner.rehearse is not None
    assert planner.rehearse.tools == (
        ("bash", '{"command": "ls"}'),
        ("write", '{"path": "notes.md", "content": "# notes"}'),
    )
    port = _task(plan, "port")
    assert port.for_each == "${{ tasks.planner.output.modules }}"
    assert port.prompt.text == "Port ${{ item }} to the new API."  # raw: rendered at run time
    assert port.rehearse is not None
    assert port.rehearse.error is not None
    assert (port.rehearse.error.status, port.rehearse.error.retry_after_s) == (529, 3)
    assert _task(plan, "docs").for_each == ("api", "cli")
    assert _task(plan, "fixer").when.startswith("${{ tasks.reviewer.status == 'failed'")
    assert _task(plan, "never").when == "false"


# --- one resolved shape -----------------------------------------------------------------------


def test_a_v1_plan_resolves_with_v1_meaning(tmp_path: Path) -> None:
    text = """
    version: v1
    stages:
      - id: a
        mode: parallel
        tasks: [{id: x, prompt: hi, read_only: true}, {id: y, prompt: hi, read_only: true}]
      - id: b
        tasks: [{id: u, prompt: hi}, {id: v, prompt: hi}]
    """
    plan = _resolve(tmp_path, text)
    assert plan.version == "v1"
    assert (plan.max_concurrency, plan.timeout_s, plan.budget_usd) == (None, None, None)
    by_id = {t.id: t for t in plan.tasks}
    assert by_id["x"].needs == by_id["y"].needs == ()
    assert by_id["u"].needs == (("a", "x"), ("a", "y"))
    assert by_id["v"].needs == (("a", "x"), ("a", "y"), ("b", "u"))  # a sequential stage chains
    assert [by_id[k].layer for k in "xyuv"] == [0, 0, 1, 2]
    for task in plan.tasks:
        assert (task.timeout_s, task.idle_timeout_s, task.retries) == (None, None, NO_RETRIES)
        assert (task.controls, task.env, task.check, task.when) == (
            NO_CONTROLS,
            (),
            None,
            "always()",
        )
    assert [t.line for t in plan.tasks] == [5, 5, 7, 7]


def test_stage_needs_default_none_and_refs(tmp_path: Path) -> None:
    text = """
    version: v2
    stages:
      - id: a
        tasks: [{id: x, prompt: hi}]
      - id: b
        needs: []
        tasks: [{id: y, prompt: hi}]
      - id: c
        mode: parallel
        needs: [a, b/y]
        tasks: [{id: z, prompt: hi, read_only: true, needs: [x]}]
      - id: d
        tasks: [{id: w, prompt: hi}]
    """
    plan = _resolve(tmp_path, text)
    by_id = {t.id: t for t in plan.tasks}
    assert by_id["y"].needs == ()
    assert by_id["z"].needs == (("a", "x"), ("b", "y"))  # no repeat of a/x
    assert by_id["w"].needs == (("c", "z"),)
    assert [s.needs for s in plan.stages] == [(), (), (("a", "x"), ("b", "y")), (("c", "z"),)]
    assert [[t.id for t in layer] for layer in plan.layers()] == [["x", "y"], ["z"], ["w"]]


def test_a_plan_built_directly_checks_its_graph_too() -> None:
    data = {
        "version": "v2",
        "stages": [
            {
                "id": "s",
                "mode": "parallel",
                "tasks": [
                    {"id": "t", "prompt": "x", "read_only": True, "needs": ["u"]},
                    {"id": "u", "prompt": "x", "read_only": True, "needs": ["t"]},
                ],
            }
        ],
    }
    with pytest.raises(ValidationError, match="the needs form a cycle: s/t -> s/u -> s/t"):
        PlanV2.model_validate(data)
    del data["stages"][0]["tasks"][1]["needs"]  # type: ignore[index]
    plan = resolve(PlanV2.model_validate(data))
    assert plan.tasks[0].needs == (("s", "u"),)
    assert plan.tasks[0].line is None  # not from a file


# --- dry run and diagrams ----------------------------------------------------------------------


def test_dry_run_names_env_variables_but_never_prints_their_values(tmp_path: Path) -> None:
    text = """
    version: v2
    stages:
      - id: s
        tasks:
          - id: t
            prompt: hi
            env: {API_TOKEN: "ghp_literalsecretvalue0123456789abcdef", FROM: "${{ env.X }}"}
            mcp_config: {mcpServers: {gh: {env: {GITHUB_TOKEN: "hunter2-secret"}}}}
    """
    plan = _resolve(tmp_path, text)
    doc = dry_run_document(plan, plan_path=tmp_path / "plan.yaml")
    text_out = json.dumps(doc)
    assert "literalsecretvalue" not in text_out
    assert "hunter2" not in text_out
    [task] = doc["stages"][0]["tasks"]  # type: ignore[index]
    assert task["env"] == ["API_TOKEN", "FROM"]
    assert task["controls"]["mcp_config"] == {"inline_keys": ["mcpServers"]}


def test_dry_run_shows_needs_layers_and_every_resolved_key(tmp_path: Path) -> None:
    path = PLANS / "valid" / "v2_everything.yaml"
    doc = dry_run_document(resolve(load_plan(path)), plan_path=path)
    assert json.loads(json.dumps(doc)) == doc
    tasks = {t["id"]: t for s in doc["stages"] for t in s["tasks"]}  # type: ignore[attr-defined]
    assert tasks["notify"]["needs"] == ["review/reviewer", "migrate/port", "migrate/docs"]
    assert tasks["notify"]["layer"] == 3
    assert tasks["fixer"]["needs"] == ["migrate/port", "migrate/docs", "review/reviewer"]
    assert set(tasks["port"]) == {
        *("id", "line", "needs", "layer", "model", "verbosity", "workspace", "on_error"),
        *("read_only", "allow_shared_writes", "prompt", "when", "for_each", "max_instances"),
        *("timeout_s", "idle_timeout_s", "retries", "check", "output_schema", "env"),
        *("controls", "rehearse"),
    }
    assert tasks["planner"]["rehearse"]["tools"] == [
        {"bash": {"command": "ls"}},
        {"write": {"path": "notes.md", "content": "# notes"}},
    ]
    assert doc["layers"] == 5


def test_graph_renderers(tmp_path: Path) -> None:
    plan = _resolve(
        tmp_path,
        """
        version: v2
        stages:
          - id: a
            mode: parallel
            tasks: [{id: x, prompt: hi, read_only: true}, {id: y.z, prompt: hi, read_only: true}]
          - id: b
            tasks: [{id: u, prompt: hi}]
        """,
    )
    assert render_graph(plan, "mermaid") == (
        "flowchart TD\n"
        '  subgraph s0["a"]\n    t0["x"]\n    t1["y.z"]\n  end\n'
        '  subgraph s1["b"]\n    t2["u"]\n  end\n'
        "  t0 --> t2\n  t1 --> t2\n"
    )
    assert render_graph(plan, "dot") == (
        "digraph plan {\n  rankdir=TB;\n  node [shape=box];\n"
        '  subgraph cluster_0 { label="a";\n    t0 [label="x"];\n    t1 [label="y.z"];\n  }\n'
        '  subgraph cluster_1 { label="b";\n    t2 [label="u"];\n  }\n'
        "  t0 -> t2;\n  t1 -> t2;\n}\n"
    )
    with pytest.raises(ValueError, match="no graph format 'svg'"):
        render_graph(plan, "svg")  # type: ignore[arg-type]


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "v1", "v2"),
    [
        ("sonnet", True, True),
        ("opus", True, True),
        ("haiku", False, True),
        ("claude-opus-4-1", False, True),
        ("claude-3.5-sonnet-20241022", False, True),
        ("claude-", False, False),
        ("Claude-opus", False, False),
        ("gpt-4", False, False),
        ("claude-" + "x" * 100, False, False),
    ],
)
def test_model_names(model: str, v1: bool, v2: bool) -> None:
    assert (values.model_problem(model, version="v1") is None) == v1
    assert (values.model_problem(model) is None) == v2


def test_a_plan_level_problem_lists_every_graph_problem_at_once(tmp_path: Path) -> None:
    path = PLANS / "invalid" / "v2_needs_unknown.yaml"
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert [p.location for p in caught.value.problems] == [
        f"stages[1].tasks[0].needs[{k}]" for k in range(4)
    ]
