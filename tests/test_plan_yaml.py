"""Reading a plan's YAML: the 1.2 core schema, text no program can take, merges and
positions, and the limits that keep any input cheap."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from claude_runner.errors import PlanError, Problem
from claude_runner.plan import yamlsrc
from claude_runner.plan.loader import MAX_PROBLEMS, load_plan
from claude_runner.plan.models import resolve
from claude_runner.plan.rules import MAX_TASKS, is_blank
from claude_runner.plan.yamlsrc import MAX_NODES, MAX_POSITION_DEPTH, YamlStop, read_yaml


def _value(text: str) -> object:
    doc = read_yaml(f"x: {text}\n")
    assert doc is not None
    assert not doc.problems, doc.problems
    assert isinstance(doc.data, dict)
    return doc.data["x"]


def _problems_of(text: str) -> list[str]:
    doc = read_yaml(text)
    assert doc is not None
    return [message for _, _, message in doc.problems]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(PlanError) as caught:
        load_plan(_write(tmp_path, text))
    return caught.value.problems


ONE_TASK = """\
version: v1
stages:
  - id: s
    tasks:
      - id: t
        prompt: {prompt}
"""


# --- YAML 1.2 core schema -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010", 10),  # decimal, not YAML 1.1's octal 8
        ("0o17", 15),
        ("0x1F", 31),
        ("+1", 1),
        ("-0", 0),
        ("1:30", "1:30"),  # no sexagesimal numbers
        ("1_0", "1_0"),  # no digit separators
        ("0b101", "0b101"),  # no binary
        ("0o8", "0o8"),
        ("2026-11-26", "2026-11-26"),  # no timestamps
        ("2026-11-26T10:00:00Z", "2026-11-26T10:00:00Z"),
        ("1e3", 1000.0),
        ("1.", 1.0),
        (".5", 0.5),
        (".inf", math.inf),
        ("-.Inf", -math.inf),
        ("yes", "yes"),  # YAML 1.1 booleans are strings
        ("on", "on"),
        ("y", "y"),
        ("True", True),
        ("FALSE", False),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("~", None),
        ("", None),
        ("nULL", "nULL"),
        ("'010'", "010"),
        ("!!str 010", "010"),
        ("!!int 010", 10),
        ("!!float 1", 1.0),
        ("!!bool true", True),
        ("!!null ''", None),
        ("! 12", "12"),  # the non-specific tag: a string
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    got = _value(text)
    assert got == value
    assert type(got) is type(value)


def test_nan() -> None:
    got = _value(".NaN")
    assert isinstance(got, float)
    assert math.isnan(got)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!int 1.5", "cannot read '1.5' as !!int"),
        ("!!bool yes", "cannot read 'yes' as !!bool"),
        ("!!null x", "cannot read 'x' as !!null"),
        ("!!float abc", "cannot read 'abc' as !!float"),
        ("!!timestamp 2026-11-26", "the YAML tag !!timestamp is not allowed in a plan"),
    ],
)
def test_explicit_tags_take_only_their_own_forms(text: str, message: str) -> None:
    [problem] = _problems_of(f"x: {text}\n")
    assert problem.startswith(message)


def test_a_number_in_a_setting_is_read_as_editors_read_it(tmp_path: Path) -> None:
    text = ONE_TASK.format(prompt="hi").replace("    tasks:", "    mode: parallel\n    tasks:")
    text = text.replace("    mode:", "    max_parallel: 010\n    mode:")
    text += "        read_only: true\n"
    assert load_plan(_write(tmp_path, text)).stages[0].max_parallel == 10


# --- text no program can take ---------------------------------------------------------


def test_a_nul_character_is_refused_where_it_is(tmp_path: Path) -> None:
    [p] = _problems(tmp_path, ONE_TASK.format(prompt='"a\\0b"'))
    assert (p.line, p.column, p.location) == (6, 17, "stages[0].tasks[0].prompt")
    assert p.message.startswith("the text contains a NUL character (\\0), which no program")


def test_a_nul_character_in_a_key_is_refused() -> None:
    [problem] = _problems_of('"a\\0": 1\n')
    assert problem.startswith("a key: the text contains a NUL character")


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\U11111111", "\\U00110000"])
def test_an_escape_that_names_no_character_is_a_yaml_error(tmp_path: Path, escape: str) -> None:
    [p] = _problems(tmp_path, ONE_TASK.format(prompt=f'"a{escape}b"'))
    assert (p.line, p.column) == (6, 21)  # LibYAML points after the escape letter
    assert p.message.startswith("invalid YAML: ")
    assert p.message.endswith("; an escape must name a whole character")


def test_lone_surrogates_are_refused_by_the_builder_too() -> None:
    # PyYAML's own scanner (without LibYAML) lets \ud800 through: the builder refuses it.
    builder = yamlsrc._Builder(iter(()).__next__)
    assert builder._bad_text("a\ud800b", ("x",), (1, 4)) is None
    [(_, _, message)] = builder.problems
    assert message.startswith("the text contains \\ud800, half of a surrogate pair")


@pytest.mark.parametrize(
    "text",
    [
        "\u200b",  # zero width space
        "\u200b\u200c\u200d\u2060\ufeff",
        "\u00a0\u3000\u2028",
        "\u180e\u3164\uffa0",
        "\U000e0020\U000e0041",  # tag characters
        "\ufe0f\U000e0100",  # variation selectors
        "\x01\x7f\x85",
    ],
)
def test_invisible_text_is_blank(tmp_path: Path, text: str) -> None:
    assert is_blank(text)
    escaped = "".join(f"\\U{ord(c):08x}" for c in text)
    [p] = _problems(tmp_path, ONE_TASK.format(prompt=f'"{escaped}"'))
    assert p.location == "stages[0].tasks[0].prompt"
    assert p.message.startswith("the prompt is empty")


@pytest.mark.parametrize("text", ["a", "\u200ba", "\U0001f600", "\u00ad-", "\u2800", "\u0300"])
def test_text_with_something_visible_is_not_blank(text: str) -> None:
    assert not is_blank(text)


def test_a_long_number_is_cut_in_the_message(tmp_path: Path) -> None:
    text = ONE_TASK.format(prompt="hi").replace("    tasks:", "    mode: parallel\n    tasks:")
    text = text.replace("    mode:", f"    max_parallel: -{'9' * 4000}\n    mode:")
    [p] = _problems(tmp_path, text + "        read_only: true\n")
    assert p.message.startswith("must be a positive whole number (at least 1), got -999")
    assert "(a number of 4000 digits)" in p.message
    assert len(p.message) < 200


def test_a_number_longer_than_python_converts_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    [p] = _problems(tmp_path, ONE_TASK.format(prompt="9" * 5000))
    assert p.location == "stages[0].tasks[0].prompt"
    assert p.message.startswith("the number '999999")
    assert "has more than 4300 digits" in p.message
    assert len(p.message) < 200


def test_a_long_value_is_cut_in_the_message(tmp_path: Path) -> None:
    [p] = _problems(tmp_path, ONE_TASK.format(prompt="hi") + f"        model: {'x' * 100_000}\n")
    assert p.message.startswith("the string 'xxxxx")
    assert "... (100000 characters) is not allowed" in p.message
    assert len(p.message) < 200


# --- merges, aliases and where problems point ---------------------------------------------


def test_two_merge_keys_in_one_mapping_are_an_error(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        """
        version: v1
        base: &a {prompt: hi}
        more: &b {model: opus}
        stages:
          - id: s
            tasks:
              - <<: *a
                <<: *b
                id: t
        """,
    )
    dup = [p for p in found if p.location == "stages[0].tasks[0].<<"]
    assert [(p.line, p.column) for p in dup] == [(8, 9)]
    assert dup[0].message == (
        "duplicate key '<<' (first at line 7); merge several mappings with one key: '<<: [*a, *b]'"
    )


def test_merged_keys_point_at_their_source_and_own_keys_win(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        """
        version: v1
        base: &base
          model: gpt
          verbosity: loud
        stages:
          - id: s
            tasks:
              - id: t
                prompt: hi
                verbosity: shouty
                <<: *base
        """,
    )
    where = {p.location: (p.line, p.message.split(";")[0]) for p in found}
    assert where["stages[0].tasks[0].model"] == (3, "the string 'gpt' is not allowed")
    # the task's own verbosity wins over the merged one, and is reported where it is written
    assert where["stages[0].tasks[0].verbosity"] == (10, "the string 'shouty' is not allowed")


def test_a_merge_list_and_an_inline_mapping(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        version: v1
        a: &a {prompt: from a, model: opus}
        b: &b {prompt: from b, verbosity: v}
        stages:
          - id: s
            tasks:
              - {<<: [*a, *b], id: t}
              - {<<: {prompt: inline}, id: u}
        """,
    )
    with pytest.raises(PlanError) as caught:  # a and b are unknown top-level keys
        load_plan(path)
    assert {p.location for p in caught.value.problems} == {"a", "b"}
    doc = read_yaml(path.read_text(encoding="utf-8"))
    assert doc is not None
    assert isinstance(doc.data, dict)
    tasks = doc.data["stages"][0]["tasks"]
    assert tasks[0] == {"prompt": "from a", "model": "opus", "verbosity": "v", "id": "t"}
    assert tasks[1] == {"prompt": "inline", "id": "u"}


def test_a_second_document_is_refused(tmp_path: Path) -> None:
    [p] = _problems(tmp_path, ONE_TASK.format(prompt="hi") + "---\nversion: v1\n")
    assert (p.line, p.column) == (7, 1)
    assert p.message.startswith("a second YAML document starts here")


# --- limits ------------------------------------------------------------------------------


def test_the_node_limit_stops_reading_early() -> None:
    text = "x: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n"
    with pytest.raises(YamlStop) as caught:
        read_yaml(text)
    assert caught.value.message.startswith(f"the YAML has more than {MAX_NODES} nodes")
    assert caught.value.pos is not None
    assert caught.value.pos[0] == 1


def test_the_task_limit_is_checked_before_validation(tmp_path: Path) -> None:
    tasks = ",".join(["{id: t}"] * (MAX_TASKS + 1))  # every one of them invalid
    [p] = _problems(tmp_path, f"version: v1\nstages: [{{id: s, tasks: [{tasks}]}}]\n")
    assert p.location == "stages[0]"
    assert p.message.startswith(f"the plan has more than {MAX_TASKS} tasks, the limit")


def test_many_problems_are_cut_to_the_first_ones(tmp_path: Path) -> None:
    tasks = ",".join(f"{{id: t{i}, model: gpt}}" for i in range(2000))
    path = _write(tmp_path, f"version: v1\nstages: [{{id: s, tasks: [{tasks}]}}]\n")
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    err = caught.value
    assert len(err.problems) == MAX_PROBLEMS
    assert err.more
    assert str(err).startswith(
        f"invalid pipeline plan (more than {MAX_PROBLEMS} problems; the first are listed)\n"
    )
    # the first ones in the file, in order
    assert [p.location for p in err.problems[:3]] == [
        "stages[0].tasks[0]",
        "stages[0].tasks[0].model",
        "stages[0].tasks[1]",
    ]


def test_a_flood_of_unknown_keys_is_one_problem(tmp_path: Path) -> None:
    keys = ", ".join(f"k{i}: 1" for i in range(5000))
    text = f"version: v1\nstages: [{{id: s, tasks: [{{id: t, prompt: p, {keys}}}]}}]\n"
    [p] = _problems(tmp_path, text)
    assert p.location == "stages[0].tasks[0]"
    assert p.message.startswith("5000 unknown keys, such as 'k0', 'k1', 'k2'; allowed here: ")


def test_deep_values_point_at_their_nearest_kept_ancestor() -> None:
    depth = MAX_POSITION_DEPTH + 10
    text = "x: " + "[" * depth + "!!binary aGk=" + "]" * depth + "\n"
    doc = read_yaml(text)
    assert doc is not None
    [(path, pos, message)] = doc.problems
    assert len(path) == MAX_POSITION_DEPTH
    assert pos == (1, 4 + depth)  # the value's own position
    assert message.startswith("the YAML tag !!binary is not allowed")
    assert max(len(p) for p in doc.values) == MAX_POSITION_DEPTH


# --- ids -----------------------------------------------------------------------------------


def test_stage_ids_that_differ_only_by_case_are_refused(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        """
        version: v1
        stages:
          - {id: Build, tasks: [{id: t, prompt: hi}]}
          - {id: build, tasks: [{id: t, prompt: hi}]}
        """,
    )
    assert [(p.line, p.location) for p in found] == [(4, "stages[1].id")]
    assert found[0].message == (
        "stage id 'build' differs from 'Build' (stages[0]) only by case; ids become directory "
        "names, and on a case-insensitive file system (macOS, Windows) the two would be one "
        "directory: rename one"
    )


def test_task_ids_that_differ_only_by_case_are_refused_within_a_stage(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        """
        version: v1
        stages:
          - {id: s, tasks: [{id: Fix, prompt: hi}, {id: fix, prompt: hi}]}
        """,
    )
    assert [p.location for p in found] == ["stages[0].tasks[1].id"]
    assert found[0].message.startswith("task id 'fix' differs from 'Fix' (tasks[0]) only by case")
    # across stages the directories differ: accepted
    plan = load_plan(
        _write(
            tmp_path,
            """
            version: v1
            stages:
              - {id: a, tasks: [{id: Fix, prompt: hi}]}
              - {id: b, tasks: [{id: fix, prompt: hi}]}
            """,
        )
    )
    assert [t.id for t in resolve(plan).tasks] == ["Fix", "fix"]
