"""The loader, Python's jsonschema and Ajv (JavaScript, as editors) agree on plans.

Over the whole corpus (valid and invalid) and over generated plans: both validators give
the same verdict, whatever the schema refuses the loader refuses, and whatever the loader
alone refuses is one of the rules a JSON Schema cannot state (``LOADER_ONLY``). The
shipped patterns also match the same strings in ECMA-262 and in Python's ``re``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_runner.errors import PlanError
from claude_runner.plan import rules
from claude_runner.plan.loader import load_plan
from claude_runner.plan.yamlsrc import YamlStop, read_yaml
from tests.plan_yaml import yaml12
from tests.schema_js import Ajv

REPO = Path(__file__).resolve().parents[1]
PLANS = REPO / "tests" / "data" / "plans"
SCHEMAS = [REPO / "schema" / "plan-v1.schema.json", REPO / "schema" / "plan-v2.schema.json"]
CORPUS = sorted((PLANS / "valid").glob("*.yaml")) + sorted((PLANS / "invalid").glob("*.yaml"))

# What only the loader can refuse, by a part of its message. A JSON Schema cannot say:
LOADER_ONLY = (
    # YAML itself: JSON has neither duplicate keys, tags nor NUL-free text at any depth
    "duplicate key",
    "the YAML tag",
    "the text contains",
    "keys must be plain strings",
    "'<<' merges",
    # uniqueness across items, also ignoring case
    "duplicate stage id",
    "duplicate task id",
    "stage id",
    "task id",
    # a rule over the cascade defaults > stage > task, which no one subschema sees
    "a task of a parallel stage in the shared workspace",
    # a count over all stages
    "the plan has more than",
    # JSON has one number type: 2.0 is an integer there
    "expected a whole number, got",
    # lengths in UTF-8 bytes (a schema counts characters)
    "is longer than a file system allows",
    "a program argument holds at most",
    "bytes together",
    # v2: the graph (refs resolve across the plan, no cycles, bounded edges)
    "needs '",
    "needs itself",
    "the needs form a cycle",
    "tasks in all, the limit",
    # v2: templates (until the expression parser, their structure), fan-out size
    "is not closed by",
    "the expression at character",
    "when is one expression",
    "for_each is a list, or one",
    # v2: what an expression reads, checked against the plan (names, upstream tasks)
    "does not name a task whose id is unique",
    "is not upstream of this task",
    "unknown name ",
    "exists only in a task with for_each",
    "is only for env values",
    "is only for when",
    "for_each lists",
    # v2: a duration's string form has no upper bound a pattern could state
    "longer than a week",
)


@pytest.fixture(scope="module")
def ajv() -> Iterator[Ajv]:
    checker = Ajv(SCHEMAS)
    yield checker
    checker.close()


@pytest.fixture(scope="module")
def python_validator() -> list[jsonschema.protocols.Validator]:
    return [
        jsonschema.Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))
        for path in SCHEMAS
    ]


def _json_safe(value: object) -> bool:
    """JSON has no infinity or NaN: such plans are outside what a schema can judge."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(_json_safe(v) for v in value.values())
    return True


def _loader_problems(path: Path) -> list[str]:
    try:
        load_plan(path)
    except PlanError as err:
        return [p.message for p in err.problems]
    return []


def _check_agreement(
    path: Path, ajv: Ajv, python_validator: list[jsonschema.protocols.Validator]
) -> None:
    try:
        doc = read_yaml(path.read_text(encoding="utf-8"))
    except (YamlStop, UnicodeDecodeError):
        return  # not YAML: no data for a schema to judge
    if doc is None or not _json_safe(doc.data):
        return
    # The loader reads a plan by v2's models unless it says version: v1: so does this.
    schema = 0 if isinstance(doc.data, dict) and doc.data.get("version") == "v1" else 1
    js_errors = ajv.errors(schema, doc.data)
    py_errors = [e.message for e in python_validator[schema].iter_errors(doc.data)]  # type: ignore[arg-type]
    assert bool(js_errors) == bool(py_errors), (path.name, js_errors, py_errors)
    problems = _loader_problems(path)
    if js_errors:
        assert problems, f"{path.name}: the schema refuses ({js_errors}), the loader accepts"
    else:
        loader_only = [p for p in problems if not any(m in p for m in LOADER_ONLY)]
        assert not loader_only, f"{path.name}: the schema accepts what the loader refuses"


@pytest.mark.parametrize("plan", CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_corpus_gets_one_verdict(
    plan: Path, ajv: Ajv, python_validator: list[jsonschema.protocols.Validator]
) -> None:
    _check_agreement(plan, ajv, python_validator)


# --- generated plans --------------------------------------------------------------------

texts = st.one_of(
    st.sampled_from(["", " ", "x", "a/b", "..", "p.md", "../x", "/abs", "x" * 65, "0"]),
    st.sampled_from(["\u200b", "a\u2028", "\ufeff", "\x85", "\x1c", "é", "a\nb"]),
    st.text(max_size=6),
)
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=3),
    st.sampled_from([1.5, 2.0, 10**20, [], {}, ["x"], {"a": 1}]),
    texts,
)
SETTINGS = {
    "model": st.sampled_from(["sonnet", "opus", None]),
    "verbosity": st.sampled_from(["text", "v", "vv", "json", "stream-json", None]),
    "on_error": st.sampled_from(["fail_fast", "continue", None]),
    "workspace": st.sampled_from(["shared", "worktree", "snapshot_ro", None]),
}
ids = st.sampled_from(["a", "b", "B", "t", "T", "x.y", "0", "s-1"])
prompt_source = st.one_of(
    st.fixed_dictionaries({"prompt": st.sampled_from(["do it", "Résumé ✓"])}),
    st.fixed_dictionaries({"prompt_file": st.sampled_from(["p.md", "./a/b.md"])}),
)
durations = st.sampled_from([0, 90, "90s", "30m", "1h30m", "2h", None])
V2_SETTINGS = {
    "model": st.sampled_from(["sonnet", "haiku", "claude-opus-4-1", None]),
    "timeout": durations,
    "idle_timeout": durations,
    "retries": st.sampled_from(
        [0, 3, {"max": 1}, {"on": ["crash"], "backoff": {"base": "1s"}}, None]
    ),
    "max_budget_usd": st.sampled_from([0.5, 3, None]),
    "max_turns": st.sampled_from([1, 50, None]),
    "allowed_tools": st.sampled_from([["Read"], ["Bash(git *)", "Edit"], None]),
    "permission_mode": st.sampled_from(["plan", "acceptEdits", None]),
    "effort": st.sampled_from(["low", "max", None]),
    "mcp_config": st.sampled_from(["mcp.json", {"mcpServers": {}}, None]),
    "env": st.sampled_from([{"A": "x", "B": None}, {"T": "${{ env.T }}"}, None]),
    "check": st.sampled_from(["make test", {"run": "pytest", "attempts": 2}, None]),
    "rehearse": st.sampled_from([{"result": "ok"}, {"error": 529, "errors_before_success": 1}]),
}
TASK_V2 = {
    "needs": st.lists(st.sampled_from(["a", "b", "t", "a/t", "b/*", "s-1"]), max_size=2),
    "when": st.sampled_from([True, "always()", "${{ success() }}", None]),
    "for_each": st.sampled_from([["x", "y"], "${{ tasks.t.output.items }}", None]),
    "max_instances": st.sampled_from([1, 64, None]),
    "output_schema": st.sampled_from([{"type": "object"}, {"type": "array", "items": {}}]),
}


def _tasks(extra: dict[str, Any]) -> Any:
    return st.builds(
        lambda head, source: {**head, **source},
        st.fixed_dictionaries(
            {"id": ids},
            optional={
                **SETTINGS,
                "read_only": st.booleans(),
                "allow_shared_writes": st.booleans(),
                **extra,
            },
        ),
        prompt_source,
    )


def _plans(version: str, settings: dict[str, Any], task: dict[str, Any]) -> Any:
    stage_extra = {"needs": TASK_V2["needs"]} if version == "v2" else {}
    stages = st.fixed_dictionaries(
        {"id": ids, "tasks": st.lists(_tasks({**settings, **task}), min_size=1, max_size=3)},
        optional={
            **SETTINGS,
            **settings,
            **stage_extra,
            "mode": st.sampled_from(["sequential", "parallel"]),
            "max_parallel": st.sampled_from([1, 4, None]),
        },
    )
    top = {"max_concurrency": st.sampled_from([1, 8]), "budget_usd": st.just(10)}
    return st.fixed_dictionaries(
        {"version": st.just(version), "stages": st.lists(stages, min_size=1, max_size=3)},
        optional={
            "defaults": st.fixed_dictionaries({}, optional={**SETTINGS, **settings}),
            **(top if version == "v2" else {}),
        },
    )


valid_plans = st.one_of(_plans("v1", {}, {}), _plans("v2", V2_SETTINGS, TASK_V2))
KEYS = sorted(
    {*SETTINGS, *V2_SETTINGS, *TASK_V2, "id", "prompt", "prompt_file", "read_only", "mode"}
    | {"max_parallel", "version", "max_concurrency"}
)


def _containers(value: object) -> list[dict[str, Any] | list[Any]]:
    found: list[dict[str, Any] | list[Any]] = []
    if isinstance(value, dict | list):
        found.append(value)
        for item in value.values() if isinstance(value, dict) else value:
            found += _containers(item)
    return found


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    """A valid plan with up to two mutations: a value replaced, a key removed or added."""
    # A copy: sampled values are shared objects, and the mutations below change them.
    plan: dict[str, Any] = copy.deepcopy(draw(valid_plans))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        target = draw(st.sampled_from(_containers(plan)))
        if isinstance(target, list):
            if target:
                target[draw(st.integers(0, len(target) - 1))] = draw(anything)
            continue
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "add" or not target:
            target[draw(st.sampled_from([*KEYS, "x"]))] = draw(anything)
        elif action == "set":
            target[draw(st.sampled_from(sorted(target)))] = draw(anything)
        else:
            del target[draw(st.sampled_from(sorted(target)))]
    return plan


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=plans())
def test_generated_plans_get_one_verdict(
    tmp_path_factory: pytest.TempPathFactory,
    plan: dict[str, object],
    ajv: Ajv,
    python_validator: list[jsonschema.protocols.Validator],
) -> None:
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    path.write_text(yaml12(plan), encoding="utf-8")
    _check_agreement(path, ajv, python_validator)


# --- the patterns themselves ---------------------------------------------------------------

PATTERNS = {
    "id": rules.ID_SCHEMA_PATTERN,
    "dir": rules.DIR_PATTERN,
    "text": rules.TEXT_PATTERN,
    "clean": rules.CLEAN_TEXT_PATTERN,
    "prompt_path": rules.PROMPT_PATH_PATTERN,
}
# Every boundary of the blank ranges, and the characters where the dialects differ.
EDGES = sorted(
    (
        {c for lo, hi in rules.BLANK_RANGES for c in (lo - 1, lo, hi, hi + 1)}
        | {0x1C, 0x1F, 0x85, 0x2028, 0x2029, 0xFEFF, 0xD800, 0xDFFF, 0x1F600, 0x10FFFF}
    )
    - {-1, 0x110000}
)


def _samples() -> Iterator[str]:
    for code in EDGES:
        char = chr(code)
        yield from (char, f"a{char}", f"{char}a", f"a/{char}", f"{char}/a", f"a{char}\n")
    yield from ("a\n", "a\r\n", "../a", "a/..", "./", "a/./b", "-", "a" * 64, "a" * 65)


@pytest.mark.parametrize("name", PATTERNS)
def test_patterns_match_alike_in_ecma_262_and_python(ajv: Ajv, name: str) -> None:
    pattern = PATTERNS[name]
    differ = [s for s in _samples() if ajv.match(pattern, s) != bool(re.search(pattern, s))]
    assert not differ, [ascii(s) for s in differ]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(st.characters(codec=None, exclude_categories=()), max_size=12))
def test_patterns_match_alike_on_any_text(ajv: Ajv, text: str) -> None:
    for pattern in PATTERNS.values():
        assert ajv.match(pattern, text) == bool(re.search(pattern, text)), (pattern, ascii(text))


def test_blank_is_the_text_pattern_s_opposite() -> None:
    """is_blank (the loader) and TEXT_PATTERN (the schema) agree on every code point."""
    text_re = re.compile(rules.TEXT_PATTERN)
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF or code == 0:
            continue  # refused before (a NUL, half a surrogate pair): never a prompt
        char = chr(code)
        assert rules.is_blank(char) == (text_re.search(char) is None), hex(code)
