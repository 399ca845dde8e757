"""The shipped JSON Schema, the dry-run document, and both through the real CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jsonschema
import pytest

from claude_runner import proc
from claude_runner.plan.loader import load_plan
from claude_runner.plan.models import resolve
from claude_runner.plan.schema import (
    SCHEMA_DIALECT,
    dry_run_document,
    plan_json_schema,
    schema_text,
)
from tests.conftest import REPO, RunRunner

SCHEMA_DIR = REPO / "schema"
VALID = REPO / "tests" / "data" / "plans" / "valid"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_shipped_schemas_match_the_models(version: str) -> None:
    shipped = (SCHEMA_DIR / f"plan-{version}.schema.json").read_text(encoding="utf-8")
    regenerate = (
        f"uv run python -m claude_runner.plan.schema {version} > schema/plan-{version}.schema.json"
    )
    assert shipped == schema_text(version), f"schema file drifted; regenerate: {regenerate}"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_schema_is_draft_2020_12_with_an_id_and_a_title(version: str) -> None:
    schema = plan_json_schema(version)
    assert schema["$schema"] == SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:claude-runner:schema:plan-{version}"
    assert schema["title"] == f"claude-runner pipeline plan {version}"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_default_schema_is_v2_and_no_other_version_has_one() -> None:
    assert plan_json_schema() == plan_json_schema("v2")
    with pytest.raises(ValueError, match="no schema for plan version 'v3'; use v1 or v2"):
        plan_json_schema("v3")


def test_schema_accepts_the_verbosity_aliases_the_loader_accepts() -> None:
    validator = jsonschema.Draft202012Validator(plan_json_schema("v1"))
    for value in ("text", "v", "vv", "json", "stream-json", "stream_json"):
        plan = {
            "version": "v1",
            "defaults": {"verbosity": value},
            "stages": [{"id": "s", "tasks": [{"id": "t", "prompt": "x"}]}],
        }
        assert not list(validator.iter_errors(plan)), value


V1_TASK: dict[str, object] = {
    "when": "always()",
    "for_each": None,
    "max_instances": 64,
    "timeout_s": None,
    "idle_timeout_s": None,
    "retries": {"max": 0, "on": [], "backoff_base_s": 0, "backoff_max_s": 0},
    "check": None,
    "output_schema": None,
    "env": [],
    "controls": {
        "max_budget_usd": None,
        "max_turns": None,
        "allowed_tools": None,
        "disallowed_tools": None,
        "permission_mode": None,
        "append_system_prompt": None,
        "mcp_config": None,
        "add_dirs": None,
        "effort": None,
        "fallback_model": None,
        "settings": None,
    },
    "rehearse": None,
}


def test_dry_run_document_of_the_seed_example() -> None:
    path = VALID / "seed_example.yaml"
    doc = dry_run_document(resolve(load_plan(path)), plan_path=path)
    common = {"model": "opus", "verbosity": "vv", "on_error": "fail_fast", **V1_TASK}
    assert doc == {
        "format": "claude-runner.dry-run.v1",
        "plan": str(path),
        "version": "v1",
        "max_concurrency": None,
        "timeout_s": None,
        "budget_usd": None,
        "layers": 2,
        "stages": [
            {
                "id": "analyze",
                "mode": "sequential",
                "max_parallel": None,
                "on_error": "fail_fast",
                "needs": [],
                "tasks": [
                    {
                        "id": "inspect",
                        "line": 12,
                        "needs": [],
                        "layer": 0,
                        **common,
                        "workspace": "shared",
                        "read_only": False,
                        "allow_shared_writes": False,
                        "prompt": {"text": "Analyze recent changes and list risks."},
                    }
                ],
            },
            {
                "id": "implement",
                "mode": "parallel",
                "max_parallel": 2,
                "on_error": "fail_fast",
                "needs": ["analyze/inspect"],
                "tasks": [
                    {
                        "id": "code",
                        "line": 19,
                        "needs": ["analyze/inspect"],
                        "layer": 1,
                        **common,
                        "workspace": "worktree",
                        "read_only": False,
                        "allow_shared_writes": False,
                        "prompt": {"file": "prompts/implement.md"},
                    },
                    {
                        "id": "tests",
                        "line": 22,
                        "needs": ["analyze/inspect"],
                        "layer": 1,
                        **common,
                        "workspace": "shared",
                        "read_only": True,
                        "allow_shared_writes": False,
                        "prompt": {"text": "Run tests and summarize failing cases."},
                    },
                ],
            },
        ],
    }
    json.dumps(doc)  # JSON-able as it is


# --- through the CLI ---------------------------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # A relative plan path is read from the workspace; keep both inside the test.
    env["WORKSPACE_DIR"] = str(tmp_path / "workspace")
    return env


def test_cli_dry_run_prints_the_resolved_plan(run_runner: RunRunner, tmp_path: Path) -> None:
    path = VALID / "cascade.yaml"
    done = run_runner(["--pipeline", str(path), "--dry-run"], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout) == dry_run_document(resolve(load_plan(path)), plan_path=path)


def test_cli_dry_run_of_a_v2_plan(run_runner: RunRunner, tmp_path: Path) -> None:
    path = VALID / "v2_everything.yaml"
    done = run_runner(["--pipeline", str(path), "--dry-run"], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc == dry_run_document(resolve(load_plan(path)), plan_path=path)
    assert doc["version"] == "v2"
    assert "${{ env.GH_TOKEN }}" not in done.stdout  # env values are not printed


def test_cli_dry_run_model_flag_replaces_defaults_only(
    run_runner: RunRunner, tmp_path: Path
) -> None:
    path = VALID / "cascade.yaml"
    done = run_runner(["--model", "opus", "--pipeline", str(path), "--dry-run"], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    stages = json.loads(done.stdout)["stages"]
    assert [t["model"] for s in stages for t in s["tasks"]] == ["opus", "sonnet", "opus"]


def test_cli_invalid_plan_exits_2_with_every_problem_on_stderr(
    run_runner: RunRunner, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: v1\nstages:\n  - id: s\n    mode: parallel\n    tasks:\n"
        "      - id: t\n        promt: hi\n",
        encoding="utf-8",
    )
    done = run_runner(["--pipeline", str(path), "--dry-run"], _env(tmp_path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[:4] == [
        "claude-runner: error: invalid pipeline plan (3 problems)",
        f"  {path}:6:9: stages[0].tasks[0]: the task has no prompt: set prompt (text) or "
        "prompt_file (a path)",
        f"  {path}:6:9: stages[0].tasks[0]: a task of a parallel stage in the shared workspace "
        "needs read_only: true (it does not write) or allow_shared_writes: true (concurrent "
        "writes accepted); or give it workspace: worktree",
        f"  {path}:7:9: stages[0].tasks[0].promt: unknown key 'promt' (did you mean 'prompt'?); "
        "allowed here: model, verbosity, on_error, workspace, id, prompt, prompt_file, "
        "read_only, allow_shared_writes",
    ]


def test_cli_hostile_plans_never_print_a_traceback(run_runner: RunRunner, tmp_path: Path) -> None:
    cases = {
        "missing.yaml": None,
        "binary.yaml": b"\x00\xff\xfe garbage",
        "tag.yaml": b"version: v1\nstages: !!python/object/apply:os.system [id]\n",
        "list.yaml": b"- 1\n",
        "escape.yaml": b'version: v1\nstages: [{id: s, tasks: [{id: t, prompt: "\\U11111111"}]}]\n',
        "nul.yaml": b'version: v1\nstages: [{id: s, tasks: [{id: t, prompt: "a\\0b"}]}]\n',
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        done = run_runner(["--pipeline", str(path), "--dry-run"], _env(tmp_path))
        assert done.returncode == 2, (name, done.stderr)
        assert done.stdout == ""
        assert done.stderr.startswith("claude-runner: error: invalid pipeline plan (1 problem)")
        assert "Traceback" not in done.stderr


def test_cli_print_schema_is_the_shipped_v2_file(run_runner: RunRunner, tmp_path: Path) -> None:
    done = run_runner(["--print-schema"], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (SCHEMA_DIR / "plan-v2.schema.json").read_text(encoding="utf-8")


def test_importing_the_cli_loads_neither_yaml_nor_pydantic() -> None:
    code = (
        "import sys, claude_runner.cli, claude_runner.plan; "
        "print(sorted(m for m in ('yaml', 'pydantic') if m in sys.modules))"
    )
    done = proc.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
