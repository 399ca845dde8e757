"""One test per plan rule, valid and invalid, checking the message and where it points."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from claude_runner.errors import PlanError, Problem
from claude_runner.plan.loader import load_plan
from claude_runner.plan.models import Plan, resolve
from claude_runner.plan.models_v2 import PlanV2

PLANS = Path(__file__).parent / "data" / "plans"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(PlanError) as caught:
        load_plan(_write(tmp_path, text))
    return caught.value.problems


def only(tmp_path: Path, text: str) -> Problem:
    found = problems(tmp_path, text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def load(tmp_path: Path, text: str) -> Plan | PlanV2:
    return load_plan(_write(tmp_path, text))


ONE_TASK = """\
version: v1
stages:
  - id: s
    tasks:
      - id: t
        prompt: hi
"""


# --- version --------------------------------------------------------------------------


def test_version_v1_is_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, ONE_TASK).version == "v1"


def test_version_v2_is_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, ONE_TASK.replace("version: v1", "version: v2")).version == "v2"


@pytest.mark.parametrize("version", ["v3", "'1'", "V1"])
def test_any_other_version_is_rejected_at_its_line(tmp_path: Path, version: str) -> None:
    p = only(tmp_path, ONE_TASK.replace("version: v1", f"version: {version}"))
    assert (p.line, p.column, p.location) == (1, 10, "version")
    assert p.message.endswith("is not a plan version; use v1 or v2")


# --- closed models ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "location", "suggestion"),
    [
        ("version: v1\nstagse: []\n", 2, "stagse", "stages"),
        ("version: v1\ndefaults:\n  modle: opus\nstages: []\n", 3, "defaults.modle", "model"),
        (
            "version: v1\nstages:\n  - id: s\n    taks: []\n",
            4,
            "stages[0].taks",
            "tasks",
        ),
        (
            "version: v1\nstages:\n  - id: s\n    tasks:\n      - id: t\n        prompt: x\n"
            "        readonly: true\n",
            7,
            "stages[0].tasks[0].readonly",
            "read_only",
        ),
    ],
)
def test_unknown_keys_are_errors_with_a_suggestion(
    tmp_path: Path, text: str, line: int, location: str, suggestion: str
) -> None:
    found = [p for p in problems(tmp_path, text) if p.location == location]
    assert len(found) == 1
    assert found[0].line == line
    assert f"(did you mean {suggestion!r}?)" in found[0].message


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    p = only(tmp_path, ONE_TASK + "zzz: 1\n")
    assert p.message == "unknown key 'zzz'; allowed here: version, defaults, stages"
    assert p.line == 7


# --- settings values and aliases --------------------------------------------------------


def test_verbosity_aliases_resolve(tmp_path: Path) -> None:
    plan = resolve(load_plan(PLANS / "valid" / "verbosity_aliases.yaml"))
    assert [t.verbosity for t in plan.tasks] == ["vv", "vv", "text", "v"]


def test_unknown_verbosity_names_the_values_and_aliases(tmp_path: Path) -> None:
    p = only(tmp_path, ONE_TASK + "defaults:\n  verbosity: jsonl\n")
    assert (p.line, p.location) == (8, "defaults.verbosity")
    assert "use 'text', 'v' or 'vv' (or an alias: json for v" in p.message


def test_cascade_most_specific_level_wins(tmp_path: Path) -> None:
    plan = resolve(load_plan(PLANS / "valid" / "cascade.yaml"))
    got = {t.id: (t.model, t.on_error, t.workspace, t.verbosity) for t in plan.tasks}
    assert got == {
        "inherits-stage": ("opus", "continue", "snapshot_ro", "text"),
        "overrides": ("sonnet", "fail_fast", "shared", "text"),
        "inherits-defaults": ("sonnet", "continue", "worktree", "text"),
    }
    # --model replaces defaults.model only: stage and task settings still win.
    with_cli = resolve(load_plan(PLANS / "valid" / "cascade.yaml"), cli_model="opus")
    assert [t.model for t in with_cli.tasks] == ["opus", "sonnet", "opus"]


def test_explicit_null_inherits(tmp_path: Path) -> None:
    plan = resolve(load_plan(PLANS / "valid" / "explicit_nulls_inherit.yaml"))
    assert plan.tasks[0].model == "opus"


# --- stages ---------------------------------------------------------------------------


def test_stages_must_not_be_empty(tmp_path: Path) -> None:
    p = only(tmp_path, "version: v1\nstages: []\n")
    assert (p.line, p.column, p.location) == (2, 9, "stages")
    assert p.message == "stages is empty; list at least one stage"


def test_missing_key_points_at_the_parent_mapping(tmp_path: Path) -> None:
    p = only(tmp_path, "version: v1\nstages:\n  - id: s\n    mode: sequential\n")
    assert (p.line, p.column, p.location) == (3, 5, "stages[0]")
    assert p.message.startswith("missing required key 'tasks'")


# --- unique ids -------------------------------------------------------------------------


def test_stage_ids_unique_in_the_plan(tmp_path: Path) -> None:
    text = ONE_TASK + "  - id: s\n    tasks: [{id: u, prompt: x}]\n"
    p = only(tmp_path, text)
    assert (p.line, p.location) == (7, "stages[1].id")
    assert "duplicate stage id 's' (also stages[0])" in p.message


def test_task_ids_unique_in_their_stage_only(tmp_path: Path) -> None:
    p = only(tmp_path, ONE_TASK + "      - id: t\n        prompt: again\n")
    assert (p.line, p.location) == (7, "stages[0].tasks[1].id")
    assert "duplicate task id 't' (also tasks[0])" in p.message
    assert load_plan(PLANS / "valid" / "same_task_id_in_two_stages.yaml")


# --- prompt sources ---------------------------------------------------------------------


def test_task_needs_a_prompt_source(tmp_path: Path) -> None:
    p = only(tmp_path, ONE_TASK.replace("prompt: hi", "model: opus"))
    assert (p.line, p.location) == (5, "stages[0].tasks[0]")
    assert p.message.startswith("the task has no prompt")


def test_task_takes_only_one_prompt_source(tmp_path: Path) -> None:
    p = only(tmp_path, ONE_TASK + "        prompt_file: p.md\n")
    assert (p.line, p.location) == (7, "stages[0].tasks[0].prompt_file")
    assert p.message == "set exactly one of prompt and prompt_file, not both"


def test_prompt_file_alone_is_accepted(tmp_path: Path) -> None:
    plan = resolve(load(tmp_path, ONE_TASK.replace("prompt: hi", "prompt_file: ./p/t.md")))
    assert plan.tasks[0].prompt.file == "./p/t.md"
    assert plan.tasks[0].prompt.text is None


@pytest.mark.parametrize("value", ['""', '"   "', "|\n          \n"])
def test_empty_prompts_are_rejected(tmp_path: Path, value: str) -> None:
    p = only(tmp_path, ONE_TASK.replace("prompt: hi", f"prompt: {value}"))
    assert (p.line, p.location) == (6, "stages[0].tasks[0].prompt")
    assert p.message.startswith("the prompt is empty")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/etc/passwd", "is absolute"),
        ("../x.md", "contains '..' (path traversal is blocked)"),
        ("a/../../x.md", "contains '..'"),
        ("prompts/", "does not name a file"),
        ("'.'", "does not name a file"),
    ],
)
def test_prompt_file_must_be_relative_inside_the_workspace(
    tmp_path: Path, value: str, why: str
) -> None:
    text = ONE_TASK.replace("prompt: hi", f"prompt_file: {value}")
    with pytest.raises(PlanError) as caught:
        load_plan(_write(tmp_path, text), workspace=Path("/workspace"))
    [p] = caught.value.problems
    assert (p.line, p.column, p.location) == (6, 22, "stages[0].tasks[0].prompt_file")
    assert why in p.message
    assert p.message.endswith("(the workspace is /workspace)")


# --- parallel + shared guard ----------------------------------------------------------------

PARALLEL = """\
version: v1
{defaults}
stages:
  - id: s
    mode: parallel
    {stage}
    tasks:
      - id: t
        prompt: hi
        {task}
"""


@pytest.mark.parametrize(
    ("defaults", "stage", "task"),
    [
        ("", "", ""),
        ("defaults: {workspace: shared}", "", ""),
        ("defaults: {workspace: worktree}", "workspace: shared", ""),
        ("", "workspace: worktree", "workspace: shared"),
        ("", "", "read_only: false"),
    ],
)
def test_parallel_shared_task_without_a_guard_is_rejected(
    tmp_path: Path, defaults: str, stage: str, task: str
) -> None:
    p = only(tmp_path, PARALLEL.format(defaults=defaults, stage=stage, task=task))
    assert (p.line, p.column, p.location) == (8, 9, "stages[0].tasks[0]")
    assert "needs read_only: true" in p.message
    assert "allow_shared_writes: true" in p.message


@pytest.mark.parametrize(
    ("defaults", "stage", "task"),
    [
        ("", "", "read_only: true"),
        ("", "", "allow_shared_writes: true"),
        ("", "", "workspace: worktree"),
        ("", "workspace: snapshot_ro", ""),
        ("defaults: {workspace: worktree}", "", ""),
    ],
)
def test_parallel_task_with_a_guard_or_own_workspace_is_accepted(
    tmp_path: Path, defaults: str, stage: str, task: str
) -> None:
    load(tmp_path, PARALLEL.format(defaults=defaults, stage=stage, task=task))


def test_sequential_shared_task_needs_no_guard(tmp_path: Path) -> None:
    load(tmp_path, ONE_TASK)


# --- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a/b", "..", ".hidden", "-x", "a b", "'" + "x" * 65 + "'"])
def test_ids_must_be_safe_path_components(tmp_path: Path, value: str) -> None:
    p = only(tmp_path, ONE_TASK.replace("id: t", f"id: {value}"))
    assert (p.line, p.column, p.location) == (5, 13, "stages[0].tasks[0].id")
    assert "is not a safe id; ids become directory names" in p.message
    assert "(pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$)" in p.message


@pytest.mark.parametrize("value", ["a", "v1.2", "x_y-z", "'0'", "'" + "x" * 64 + "'"])
def test_safe_ids_are_accepted(tmp_path: Path, value: str) -> None:
    load(tmp_path, ONE_TASK.replace("id: t", f"id: {value}"))


def test_a_number_id_asks_for_quotes(tmp_path: Path) -> None:
    p = only(tmp_path, ONE_TASK.replace("id: t", "id: 12"))
    assert p.message == "expected a string, got 12 (a number); put it in quotes"


# --- max_parallel ----------------------------------------------------------------------------


def test_max_parallel_positive_on_a_parallel_stage(tmp_path: Path) -> None:
    plan = load(
        tmp_path, PARALLEL.format(defaults="", stage="max_parallel: 2", task="read_only: true")
    )
    assert plan.stages[0].max_parallel == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be a positive whole number (at least 1), got 0"),
        ("-1", "must be a positive whole number (at least 1), got -1"),
        ("'2'", "expected a whole number, got the string '2'"),
        ("1.5", "expected a whole number, got 1.5 (a number)"),
        ("true", "expected a whole number, got true (a boolean)"),
    ],
)
def test_max_parallel_must_be_a_positive_integer(tmp_path: Path, value: str, message: str) -> None:
    text = PARALLEL.format(defaults="", stage=f"max_parallel: {value}", task="read_only: true")
    p = only(tmp_path, text)
    assert (p.line, p.column, p.location, p.message) == (6, 19, "stages[0].max_parallel", message)


@pytest.mark.parametrize("mode", ["", "mode: sequential"])
def test_max_parallel_is_an_error_on_a_sequential_stage(tmp_path: Path, mode: str) -> None:
    text = f"version: v1\nstages:\n  - id: s\n    {mode}\n    max_parallel: 2\n"
    text += "    tasks: [{id: t, prompt: hi}]\n"
    p = only(tmp_path, text)
    assert (p.line, p.location) == (5, "stages[0].max_parallel")
    assert p.message.startswith("max_parallel applies only to a parallel stage")


# --- strict booleans ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ['"yes"', '"true"', "1", "'on'", "yes", "on", "no"])
def test_booleans_must_be_yaml_booleans(tmp_path: Path, value: str) -> None:
    p = only(tmp_path, ONE_TASK + f"        allow_shared_writes: {value}\n")
    assert (p.line, p.location) == (7, "stages[0].tasks[0].allow_shared_writes")
    assert p.message.startswith("expected true or false, got")


def test_yaml11_boolean_words_are_plain_strings() -> None:
    plan = load_plan(PLANS / "valid" / "yaml11_words_are_strings.yaml")
    assert plan.stages[0].id == "on"
    assert [(t.id, t.prompt) for t in plan.stages[0].tasks] == [("no", "yes"), ("off", "y")]


def test_real_booleans_are_accepted(tmp_path: Path) -> None:
    plan = load(
        tmp_path, ONE_TASK + "        allow_shared_writes: true\n        read_only: false\n"
    )
    assert plan.stages[0].tasks[0].allow_shared_writes is True


# --- YAML safety ------------------------------------------------------------------------------


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    p = only(tmp_path, ONE_TASK + "        prompt: other\n")
    assert (p.line, p.column, p.location) == (7, 9, "stages[0].tasks[0].prompt")
    assert p.message.startswith("duplicate key 'prompt' (first at line 6)")


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.getcwd []", "!x hi", "!!binary aGk="])
def test_non_standard_tags_are_rejected(tmp_path: Path, tag: str) -> None:
    p = only(tmp_path, ONE_TASK.replace("prompt: hi", f"prompt: {tag}"))
    assert (p.line, p.location) == (6, "stages[0].tasks[0].prompt")
    assert "is not allowed in a plan" in p.message


def test_standard_explicit_tags_are_accepted(tmp_path: Path) -> None:
    plan = load(tmp_path, ONE_TASK.replace("id: t", "id: !!str 123"))
    assert plan.stages[0].tasks[0].id == "123"


def test_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    plan = resolve(load_plan(PLANS / "valid" / "anchors_and_merge.yaml"))
    got = [(t.id, t.model, t.read_only, t.prompt.text) for t in plan.tasks]
    assert got == [
        ("security", "opus", True, "Review the diff."),
        ("style", "sonnet", True, "Review the diff."),
        ("perf", None, True, "Review the diff."),
    ]


def test_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    p = only(tmp_path, "version: v1\nstages: [\n  {id: s\n")
    assert p.line == 4
    assert p.message.startswith("invalid YAML: ")


def test_non_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"version: v1\nstages: [\xc3(]\n")
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    [p] = caught.value.problems
    assert (p.line, p.column) == (2, 10)
    assert p.message == "the plan is not valid UTF-8 (byte 0xc3); save it as UTF-8"


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n"])
def test_empty_plan(tmp_path: Path, text: str) -> None:
    p = only(tmp_path, text)
    assert p.line is None
    assert p.message.startswith("the plan is empty")


@pytest.mark.parametrize(("text", "what"), [("- a\n", "a list"), ("42\n", "42 (a number)")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, what: str) -> None:
    p = only(tmp_path, text)
    assert p.line == 1
    assert p.message == f"the top level must be a mapping with version and stages, not {what}"


def test_missing_file_directory_and_fifo(tmp_path: Path) -> None:
    for path, message in [
        (tmp_path / "nope.yaml", "plan file not found"),
        (tmp_path, "this is a directory, not a plan file"),
    ]:
        with pytest.raises(PlanError) as caught:
            load_plan(path)
        assert str(caught.value.problems[0]) == f"{path}: {message}"
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(PlanError, match="not a regular file"):
        load_plan(fifo)  # returns at once: opened non-blocking, nobody writes


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        version: v1
        defaults: {model: gpt}
        stages:
          - id: a/b
            max_parallel: 2
            tasks:
              - id: t
              - id: t
                prompt: ""
                read_only: "no"
        """,
    )
    assert [(p.line, p.location) for p in found] == [
        (2, "defaults.model"),
        (4, "stages[0].id"),
        (5, "stages[0].max_parallel"),
        (7, "stages[0].tasks[0]"),
        (8, "stages[0].tasks[1].id"),
        (9, "stages[0].tasks[1].prompt"),
        (10, "stages[0].tasks[1].read_only"),
    ]
    text = str(PlanError(found))
    assert text.startswith("invalid pipeline plan (7 problems)\n")
    assert f"\n  {tmp_path / 'plan.yaml'}:9:17: stages[0].tasks[1].prompt: the prompt" in text


# --- the model on its own -------------------------------------------------------------------


def test_model_alone_enforces_the_cross_field_rules() -> None:
    data = {
        "version": "v1",
        "stages": [
            {"id": "s", "tasks": [{"id": "t", "prompt": "x"}]},
            {"id": "s", "tasks": [{"id": "t", "prompt": "x", "prompt_file": "y"}]},
        ],
    }
    with pytest.raises(ValidationError) as caught:
        Plan.model_validate(data)
    text = str(caught.value)
    assert "stages[1].id: duplicate stage id 's'" in text
    assert "stages[1].tasks[0].prompt_file: set exactly one" in text


@pytest.mark.parametrize("value", ["a/" + "x" * 256, "/".join(["abcdefgh"] * 500), "é" * 128])
def test_prompt_file_that_no_file_system_can_hold_is_refused(tmp_path: Path, value: str) -> None:
    p = only(tmp_path, ONE_TASK.replace("prompt: hi", f"prompt_file: {value}"))
    assert p.location == "stages[0].tasks[0].prompt_file"
    assert "is longer than a file system allows (4095 bytes in all, 255 for one name)" in p.message
    load(tmp_path, ONE_TASK.replace("prompt: hi", f"prompt_file: a/{'x' * 255}"))
