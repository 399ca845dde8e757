"""Property tests: ids, prompt paths, and "no input makes the loader crash"."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_runner.errors import PlanError
from claude_runner.plan.loader import load_plan, read_prompt_file
from claude_runner.plan.rules import (
    ID_PATTERN,
    ID_RE,
    ID_SCHEMA_PATTERN,
    PROMPT_PATH_PATTERN,
    prompt_path_problem,
)
from tests.plan_yaml import yaml12

T = TypeVar("T")
# Several examples write a file each; deadline off because CPU here is shared.
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _attempt(action: Callable[[], T]) -> T | PlanError:
    """The action's result, or the PlanError it raised (anything else propagates)."""
    try:
        return action()
    except PlanError as err:
        return err


def _plan_file(directory: Path, **task: object) -> Path:
    data = {"version": "v1", "stages": [{"id": "s", "tasks": [{"id": "t", **task}]}]}
    path = directory / "plan.yaml"
    path.write_text(yaml12(data), encoding="utf-8")
    return path


ids = st.one_of(
    st.from_regex(ID_PATTERN, fullmatch=True),
    st.text(alphabet=st.sampled_from("aZ09_.-/ \\~\t\n:é"), max_size=70),
    st.text(max_size=70),
)


@SETTINGS
@given(task_id=ids)
def test_an_id_is_accepted_exactly_when_it_is_a_safe_path_component(
    tmp_path: Path, task_id: str
) -> None:
    path = _plan_file(tmp_path, id=task_id, prompt="hi")
    safe = ID_RE.fullmatch(task_id) is not None
    assert safe == (re.search(ID_SCHEMA_PATTERN, task_id) is not None)  # editors agree
    if safe:
        plan = load_plan(path)
        assert plan.stages[0].tasks[0].id == task_id
        # A safe id is one directory level, never a way out or a hidden entry.
        assert Path(task_id).name == task_id
        assert task_id not in (".", "..")
        assert not task_id.startswith((".", "-"))
        assert len(task_id) <= 64
    else:
        with pytest.raises(PlanError) as caught:
            load_plan(path)
        [problem] = caught.value.problems
        assert problem.location == "stages[0].tasks[0].id"
        assert problem.line == 1  # the plan is one line of JSON
        if "\x00" in task_id:  # refused for any text, before the id rule
            assert problem.message.startswith("the text contains a NUL character")
        else:
            assert f"(pattern {ID_PATTERN})" in problem.message


segments = st.lists(
    st.sampled_from(["..", ".", "", "a", "b.md", "...", " ", "x y", "é", "\\", "~", "\n"]),
    min_size=1,
    max_size=6,
)
paths = st.one_of(segments.map("/".join), st.text(max_size=30))


@SETTINGS
@given(rel=paths)
def test_an_accepted_prompt_path_stays_inside_the_workspace(rel: str) -> None:
    problem = prompt_path_problem(rel)
    # The schema's regex says the same as the loader, so editors agree with the runner.
    assert (problem is None) == (re.search(PROMPT_PATH_PATTERN, rel) is not None)
    if problem is None:
        inside = os.path.normpath(os.path.join("/workspace", rel))
        assert inside.startswith("/workspace/")
        assert inside != "/workspace"
    else:
        assert "prompt_file" in problem


@SETTINGS
@given(rel=paths)
def test_the_loader_and_the_rule_agree_on_prompt_paths(tmp_path: Path, rel: str) -> None:
    path = _plan_file(tmp_path, prompt_file=rel)
    problem = prompt_path_problem(rel)
    if "\x00" in rel:  # refused for every string of a plan, before this rule
        problem = "the text contains a NUL character"
    if problem is None:
        assert load_plan(path).stages[0].tasks[0].prompt_file == rel
    else:
        with pytest.raises(PlanError) as caught:
            load_plan(path)
        [reported] = caught.value.problems
        assert reported.location == "stages[0].tasks[0].prompt_file"
        assert reported.message.startswith(problem)


@pytest.fixture
def tricky_workspace(tmp_path: Path) -> Path:
    """A workspace with links that lead out, and a secret outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a").write_text("SECRET", encoding="utf-8")
    ws = tmp_path / "ws"
    (ws / "d").mkdir(parents=True)
    (ws / "a").write_text("top", encoding="utf-8")
    (ws / "d" / "a").write_text("nested", encoding="utf-8")
    (ws / "out").symlink_to(outside)
    (ws / "d" / "up").symlink_to("..")
    (ws / "d" / "far").symlink_to("../../outside/a")
    return ws


walks = st.lists(
    st.sampled_from(["a", "d", "out", "up", "far", "..", ".", ""]), min_size=1, max_size=5
).map("/".join)


@SETTINGS
@given(rel=walks)
def test_prompt_files_never_come_from_outside(tricky_workspace: Path, rel: str) -> None:
    outcome = _attempt(lambda: read_prompt_file(tricky_workspace, rel))
    if isinstance(outcome, PlanError):
        assert len(outcome.problems) == 1
    else:
        assert outcome in ("top", "nested")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_no_input_crashes_the_loader(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(raw)
    outcome = _attempt(lambda: load_plan(path))
    if isinstance(outcome, PlanError):
        assert outcome.problems
        assert all(str(p).startswith(f"{path}") for p in outcome.problems)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(["v1", "parallel", "shared", "opus", "json", "t", "s", "../x", ""]),
    st.sampled_from(["v2", "1h30m", "s/t", "s/*", "${{ x }}", "${{", "crash", "plan"]),
)
keys = st.sampled_from(
    [
        *("version", "stages", "defaults", "id", "tasks", "prompt", "prompt_file", "mode"),
        *("max_parallel", "read_only", "allow_shared_writes", "workspace", "model", "x"),
        *("needs", "when", "for_each", "max_instances", "output_schema", "timeout", "retries"),
        *("check", "run", "attempts", "env", "rehearse", "error", "tools", "bash", "on"),
        *("mcp_config", "settings", "allowed_tools", "max_concurrency", "budget_usd"),
    ]
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=st.dictionaries(keys, trees, max_size=4))
def test_any_structure_loads_or_fails_with_located_problems(tmp_path: Path, tree: object) -> None:
    """v1 and v2 keys anywhere, any values: a plan or located problems, never a crash."""
    path = tmp_path / "plan.yaml"
    path.write_text(yaml12(tree), encoding="utf-8")
    outcome = _attempt(lambda: load_plan(path))
    if isinstance(outcome, PlanError):
        assert outcome.problems
        assert all(p.line is not None and p.column is not None for p in outcome.problems)
