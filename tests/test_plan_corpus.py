"""The plan corpora: every invalid plan fails with exactly its expected problems, every
valid plan loads and also passes the shipped JSON Schema.

An invalid plan states its expected problems in header lines ``# expect: LINE:COL:
location: message`` (one per problem, in report order); files that cannot carry a
comment (empty, UTF-16) have a sidecar ``NAME.expected`` with the same lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from claude_runner.errors import PlanError
from claude_runner.plan.loader import load_plan
from claude_runner.plan.yamlsrc import read_yaml

PLANS = Path(__file__).parent / "data" / "plans"
INVALID = sorted((PLANS / "invalid").glob("*.yaml"))
VALID = sorted((PLANS / "valid").glob("*.yaml"))
SCHEMAS = {
    version: json.loads(
        (Path(__file__).parents[1] / "schema" / f"plan-{version}.schema.json").read_text()
    )
    for version in ("v1", "v2")
}
EXPECT = b"# expect: "


def _data(plan: Path) -> object:
    """The plain data the loader validates (YAML 1.2 booleans, as editors read it)."""
    doc = read_yaml(plan.read_text(encoding="utf-8"))
    assert doc is not None
    return doc.data


def _expected(plan: Path) -> list[str]:
    sidecar = plan.with_suffix(".expected")
    if sidecar.exists():
        return sidecar.read_text(encoding="utf-8").splitlines()
    lines = plan.read_bytes().splitlines()
    return [line[len(EXPECT) :].decode() for line in lines if line.startswith(EXPECT)]


def _reported(plan: Path) -> list[str]:
    with pytest.raises(PlanError) as caught:
        load_plan(plan)
    prefix = f"{plan}:"
    rendered = [str(problem) for problem in caught.value.problems]
    assert all(r.startswith(prefix) for r in rendered), rendered
    return [r[len(prefix) :].strip() for r in rendered]


def test_corpora_are_big_enough() -> None:
    assert len(INVALID) >= 40
    assert (PLANS / "valid" / "seed_example.yaml").exists()
    assert all(_expected(plan) for plan in INVALID), "every invalid plan states its problems"


@pytest.mark.parametrize("plan", INVALID, ids=lambda p: p.stem)
def test_invalid_plan_reports_exactly_the_expected_problems(plan: Path) -> None:
    assert _reported(plan) == _expected(plan)


@pytest.mark.parametrize("plan", VALID, ids=lambda p: p.stem)
def test_valid_plan_loads(plan: Path) -> None:
    loaded = load_plan(plan)
    assert loaded.version in ("v1", "v2")
    assert loaded.stages


@pytest.mark.parametrize("plan", VALID, ids=lambda p: p.stem)
def test_valid_plan_passes_the_shipped_schema(plan: Path) -> None:
    data = _data(plan)
    assert isinstance(data, dict)
    jsonschema.Draft202012Validator(SCHEMAS[data["version"]]).validate(data)


@pytest.mark.parametrize(
    "name",
    [
        "unknown_task_key_typo",
        "stages_empty",
        "both_prompts",
        "no_prompt",
        "prompt_file_absolute",
        "prompt_file_dotdot",
        "max_parallel_zero",
        "max_parallel_sequential",
        "id_slash",
        "id_leading_dot",
        "read_only_string",
        "read_only_unquoted_yes",
        "blank_prompt",
    ],
)
def test_schema_rejects_what_it_can_express(name: str) -> None:
    """Editors flag these too (cross-item rules such as unique ids are loader-only)."""
    data = _data(PLANS / "invalid" / f"{name}.yaml")
    assert isinstance(data, dict)
    schema = SCHEMAS["v1" if data.get("version") == "v1" else "v2"]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(data))
