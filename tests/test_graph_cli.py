"""The v2 graph and guardrails with the real CLI against the stand-in API: a verify gate
that fails once and then passes in the same session, a condition that skips, agent
controls reaching the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claude_runner.plan.resolved import Check, Controls
from tests.fakeapi import FakeMessagesAPI, Text, ToolUse, first_user_text
from tests.runs import Runner, of_type, plan_of, result_of, set_task, task, tuned, v2_plan

pytestmark = pytest.mark.cli


def test_a_check_that_fails_once_then_passes_in_the_same_session(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    fake_api.on(
        "gate-task",
        Text("first try"),  # claims done; the check disagrees
        ToolUse("Bash", {"command": "touch done.txt"}),  # told why, the agent fixes it
        Text("fixed"),
    )
    plan = tuned(plan_of({"id": "s", "tasks": [{"id": "g", "prompt": "gate-task"}]}))
    plan = set_task(plan, ("s", "g"), check=Check(run="test -f done.txt", attempts=3, timeout_s=60))
    code, events = cli.run(plan)
    g = task(events, "s", "g")
    assert code == 0, g
    assert g["result"] == "fixed"
    assert [(c["check"], c["passed"]) for c in g["checks"]] == [(1, False), (2, True)]
    assert [(e["attempt"], e["passed"]) for e in of_type(events, "task_check")] == [
        (1, False),
        (2, True),
    ]
    assert len(g["attempts"]) == 1  # the gate is part of one attempt
    # The second CLI run continued the session: it saw the first answer and the check's
    # verdict in the same conversation.
    continued = [b for b in fake_api.requests if "gate-task" in first_user_text(b)]
    last = json.dumps(continued[-1]["messages"])
    assert "first try" in last
    assert "test -f done.txt" in last
    assert "exited with code 1" in last
    assert len({e["session_id"] for e in of_type(events, "task_session_bind")}) == 1
    log = Path(g["checks"][0]["log"])
    assert log.name == "check-1.log"


def test_a_check_that_never_passes_fails_the_task(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("stubborn", Text("done"))
    plan = tuned(plan_of({"id": "s", "tasks": [{"id": "g", "prompt": "stubborn"}]}))
    plan = set_task(
        plan, ("s", "g"), check=Check(run="echo nope; exit 3", attempts=2, timeout_s=60)
    )
    code, events = cli.run(plan)
    g = task(events, "s", "g")
    assert code == 1
    assert (g["status"], g["failure_kind"]) == ("failed", "check_failed")
    assert [c["exit_code"] for c in g["checks"]] == [3, 3]
    assert "nope" in Path(g["checks"][1]["log"]).read_text()


def test_a_condition_skips_with_the_real_cli(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("review-it", Text("looks good"))
    fake_api.on("fix-it", Text("fixed"))
    plan = tuned(
        plan_of(
            {
                "id": "review",
                "tasks": [
                    {"id": "reviewer", "prompt": "review-it"},
                    {"id": "fixer", "prompt": "fix-it"},
                ],
            }
        )
    )
    plan = set_task(plan, ("review", "fixer"), when="tasks.reviewer.status == 'failed'")
    code, events = cli.run(plan)
    assert code == 0
    fixer = task(events, "review", "fixer")
    assert (fixer["status"], fixer["reason"]) == ("skipped", "condition false")
    assert not any("fix-it" in first_user_text(b) for b in fake_api.requests)
    assert result_of(events)["status"] == "succeeded"


def test_max_turns_reaches_the_cli_and_ends_the_task(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    fake_api.on("busy", ToolUse("Bash", {"command": "echo again"}))  # never finishes
    plan = tuned(plan_of({"id": "s", "tasks": [{"id": "b", "prompt": "busy"}]}))
    plan = set_task(plan, ("s", "b"), controls=Controls(max_turns=2))
    code, events = cli.run(plan)
    b = task(events, "s", "b")
    assert code == 1
    assert (b["status"], b["failure_kind"], b["result_subtype"]) == (
        "failed",
        "max_turns",
        "error_max_turns",
    )
    assert len(b["attempts"]) == 1  # max_turns is not retried by default


def test_agent_controls_reach_the_cli(cli: Runner, fake_api: FakeMessagesAPI) -> None:
    fake_api.on("controlled", Text("ok"))
    # Through the real loader: the v2 keys as a user writes them.
    plan = v2_plan(
        {
            "defaults": {"verbosity": "vv"},
            "stages": [
                {
                    "id": "s",
                    "tasks": [
                        {
                            "id": "c",
                            "prompt": "controlled",
                            "disallowed_tools": ["WebFetch", "WebSearch"],
                            "append_system_prompt": "Answer in haiku.",
                            "env": {"MY_SETTING": "on"},
                        }
                    ],
                }
            ],
        }
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    [body] = [b for b in fake_api.requests if "controlled" in first_user_text(b)]
    tools = {t["name"] for t in body.get("tools", [])}
    assert "Bash" in tools
    assert not {"WebFetch", "WebSearch"} & tools
    assert "Answer in haiku." in json.dumps(body["system"])
    init = next(
        e["message"]
        for e in of_type(events, "task_output")
        if e["message"] and e["message"].get("subtype") == "init"
    )
    assert "WebFetch" not in init["tools"]


def test_env_values_from_the_runners_environment_reach_the_agent_masked(
    cli: Runner, fake_api: FakeMessagesAPI
) -> None:
    deploy_key = "dk-live-7f3a9c2e5b8d1f4a6c0e"  # no known token shape: masked as a value
    cli.env = {**cli.env, "MY_DEPLOY_KEY": deploy_key}
    fake_api.on("use-key", ToolUse("Bash", {"command": "echo key=$DEPLOY"}), Text("used"))
    plan = tuned(
        plan_of({"id": "s", "tasks": [{"id": "k", "prompt": "use-key"}]}, verbosity="vv"),
        controls={"env": {"DEPLOY": "${{ env.MY_DEPLOY_KEY }}"}},
    )
    code, events = cli.run(plan)
    assert code == 0, result_of(events)
    # The agent got the value: its tool printed it back to the model...
    assert f"key={deploy_key}" in json.dumps(fake_api.requests[-1]["messages"])
    # ... and nothing the runner wrote holds it.
    run_dir = Path(result_of(events)["run_dir"])
    assert deploy_key not in json.dumps(events)
    for path in run_dir.rglob("*.log"):
        assert deploy_key not in path.read_text(errors="replace"), path
    assert "key=***" in Path(task(events, "s", "k")["log"]).read_text()
