"""The CLI contract the runner relies on, checked against the real pinned CLI.

Each failure case of ``tests/cli_cases.py`` is provoked through the stand-in API and
must print what ``docs/cli-behaviour.md`` says and classify as the case expects; the
agent-control flags must keep their spelling and visible effect. Run after upgrading
the pinned CLI; ``CLAUDE_RUNNER_CAPTURE_CLI=1`` also rewrites the recordings in
``tests/data/cli/`` (then ``tests/test_classify.py`` replays them).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from claude_runner import proc
from claude_runner.pipeline.classify import classify
from claude_runner.standin.replies import Text, ToolUse
from claude_runner.standin.server import StandinAPI
from claude_runner.standin.wire import tool_results
from tests.cli_cases import CASES, DATA, Case, Observed, observe, run_case

pytestmark = pytest.mark.cli

CAPTURE = os.environ.get("CLAUDE_RUNNER_CAPTURE_CLI") == "1"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_failure_case(
    case: Case,
    fake_api: StandinAPI,
    claude_bin: str,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> None:
    seen = run_case(case, fake_api, claude_bin, claude_env, tmp_path)
    if CAPTURE:
        port = fake_api.url.rsplit(":", 1)[1]
        doc = seen.recording(
            case, {str(tmp_path): "<tmp>", f"127.0.0.1:{port}": "127.0.0.1:<port>"}
        )
        (DATA / f"{case.name}.json").write_text(
            json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
        )
    if case.check is not None:
        case.check(seen)
    verdict = classify(
        seen.result,
        returncode=seen.exit_code,
        stderr_tail=seen.stderr,
        output_required=case.output_required,
        last_api_retry=seen.api_retries[-1] if seen.api_retries else None,
    )
    assert verdict.kind == case.kind, (verdict, seen)
    if case.interrupt is not None:
        stopped = classify(seen.result, returncode=seen.exit_code, stopped="cancelled")
        assert stopped.kind == "cancelled"


# --- helpers for the tests below ---------------------------------------------------------


def _cli(
    api: StandinAPI,
    claude_bin: str,
    env: Mapping[str, str],
    cwd: Path,
    *args: str,
    skip_permissions: bool = True,
) -> Observed:
    """One print-mode run with stream-json; ``args`` end with the prompt."""
    seen_before = len(api.requests)
    argv = [claude_bin, "-p", "--output-format", "stream-json", "--verbose", *args]
    if skip_permissions:
        argv.insert(1, "--dangerously-skip-permissions")
    done = proc.run(argv, cwd=cwd, env=env, timeout=120)
    return observe(done.returncode, done.stdout, done.stderr, api.requests[seen_before:])


def _roles(body: Mapping[str, Any]) -> list[str]:
    """The conversation's roles, without the environment message the CLI inserts."""
    return [m["role"] for m in body["messages"] if m["role"] != "system"]


# --- --resume ----------------------------------------------------------------------------


def test_resume_continues_the_session_with_its_messages(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    fake_api.on(
        "resume me",
        ToolUse("Bash", {"command": "echo one"}),
        Text("first answer", usage={"input_tokens": 500_000}),
        Text("continued", usage={"input_tokens": 100_000}),
    )
    env = {**claude_env, "CLAUDE_CONFIG_DIR": str(tmp_path / "config")}
    work = tmp_path / "work"
    work.mkdir()
    first = _cli(fake_api, claude_bin, env, work, "--", "resume me")
    assert first.result is not None
    session, first_cost = first.result["session_id"], first.result["total_cost_usd"]
    seen_before = len(fake_api.requests)
    again = _cli(
        fake_api,
        claude_bin,
        env,
        work,
        "--resume",
        session,
        "--max-budget-usd",
        "1",
        "--",
        "the check failed",
    )
    assert again.result is not None
    assert again.init is not None
    assert (again.exit_code, again.result["result"]) == (0, "continued")
    # The same session id, and the earlier turns are sent again.
    assert again.result["session_id"] == again.init["session_id"] == session
    body = fake_api.requests[seen_before]
    assert _roles(body) == ["user", "assistant", "user", "assistant", "user"]
    users = [m for m in body["messages"] if m["role"] == "user"]
    assert "the check failed" in json.dumps(users[-1])
    # --max-budget-usd is also told to the model, in a system message.
    assert "USD budget: $0/$1; $1 remaining" in json.dumps(body["messages"][-1])
    # total_cost_usd is the session's, earlier runs included; --max-budget-usd counts
    # only this run's spend ($0.40 of $1 although the session is past $2).
    assert first_cost > 2
    assert again.result["total_cost_usd"] == pytest.approx(first_cost + 0.4, abs=0.01)
    # Found from another cwd with the same config dir; not with another config dir.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = _cli(fake_api, claude_bin, env, elsewhere, "--resume", session, "--", "more")
    assert (moved.exit_code, moved.result and moved.result["session_id"]) == (0, session)
    other = {**env, "CLAUDE_CONFIG_DIR": str(tmp_path / "other-config")}
    lost = _cli(fake_api, claude_bin, other, work, "--resume", session, "--", "more")
    assert lost.result is not None
    assert lost.result["errors"] == [f"No conversation found with session ID: {session}"]
    # --fork-session continues the conversation under a new id.
    fork = _cli(
        fake_api, claude_bin, env, work, "--resume", session, "--fork-session", "--", "fork"
    )
    assert fork.result is not None
    assert fork.exit_code == 0
    assert fork.result["session_id"] != session


# --- agent-control flags -----------------------------------------------------------------


@pytest.mark.parametrize(
    "flag", ["--allowed-tools", "--disallowed-tools", "--add-dir", "--mcp-config", "--tools"]
)
def test_variadic_options_swallow_a_prompt_not_preceded_by_double_dash(
    flag: str, fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    value = {"--add-dir": str(tmp_path), "--mcp-config": '{"mcpServers": {}}'}.get(flag, "Read")
    eaten = _cli(fake_api, claude_bin, claude_env, tmp_path, flag, value, "the prompt")
    assert (eaten.exit_code, eaten.result, eaten.models) == (1, None, [])
    if flag == "--mcp-config":  # the prompt is taken for a config file
        assert '"the prompt" was read as a value of --mcp-config' in eaten.stderr
    else:
        assert "Input must be provided either through stdin or as a prompt argument" in (
            eaten.stderr
        )
    kept = _cli(fake_api, claude_bin, claude_env, tmp_path, flag, value, "--", "the prompt")
    assert kept.exit_code == 0, kept.stderr
    # The "=" form takes exactly one value, so a prompt may follow it.
    joined = _cli(fake_api, claude_bin, claude_env, tmp_path, f"{flag}={value}", "the prompt")
    assert joined.exit_code == 0, joined.stderr


_PYTHON_WRITES = "python3 -c \"open('ran.txt', 'w').write('x')\""


@pytest.mark.parametrize(
    "rules",
    [
        (("--permission-mode", "dontAsk"), False),
        (("--permission-mode", "dontAsk", "--allowed-tools", "Bash(python3 *)"), True),
        (("--permission-mode", "dontAsk", "--allowedTools", "Read,Bash"), True),
        (("--permission-mode", "dontAsk", "--allowed-tools", "Read", "Bash"), True),
        (("--permission-mode", "acceptEdits"), False),
        (("--permission-mode", "dontAsk", "--disallowed-tools", "Bash(python3 *)"), False),
    ],
)
def test_allowed_tools_are_permission_rules(
    rules: tuple[tuple[str, ...], bool],
    fake_api: StandinAPI,
    claude_bin: str,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> None:
    args, runs = rules
    fake_api.on("run python", ToolUse("Bash", {"command": _PYTHON_WRITES}), Text("done"))
    seen = _cli(
        fake_api,
        claude_bin,
        claude_env,
        tmp_path,
        *args,
        "--",
        "run python",
        skip_permissions=False,
    )
    assert seen.exit_code == 0, seen.stderr
    assert seen.result is not None
    assert (tmp_path / "ran.txt").exists() == runs
    denied = [d["tool_name"] for d in seen.result["permission_denials"]]
    assert denied == ([] if runs else ["Bash"])


def test_tool_lists_in_init_and_in_the_request(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    def tools(*args: str) -> tuple[list[str], list[str]]:
        seen = _cli(fake_api, claude_bin, claude_env, tmp_path, *args, "--", "list tools")
        assert seen.init is not None, seen.stderr
        return seen.init["tools"], [t["name"] for t in fake_api.requests[-1]["tools"]]

    plain_init, plain_request = tools()
    assert {"Bash", "Write", "Read"} <= set(plain_init) & set(plain_request)
    # --allowed-tools does not narrow the tool set (it only pre-approves).
    assert tools("--allowed-tools", "Bash", "Write") == (plain_init, plain_request)
    removed_init, removed_request = tools("--disallowed-tools", "Bash", "Write")
    assert not {"Bash", "Write"} & (set(removed_init) | set(removed_request))
    # A pattern rule keeps the tool (it denies matching calls only).
    assert "Bash" in tools("--disallowed-tools", "Bash(rm *)")[0]
    assert tools("--tools", "Bash", "Read")[0] == ["Bash", "Read"]


@pytest.mark.parametrize(
    "mode_shown",
    [
        ("acceptEdits", "acceptEdits"),
        ("auto", "auto"),
        ("dontAsk", "dontAsk"),
        ("plan", "plan"),
        ("manual", "default"),
        ("default", "default"),
        ("bypassPermissions", "bypassPermissions"),
    ],
)
def test_permission_modes(
    mode_shown: tuple[str, str],
    fake_api: StandinAPI,
    claude_bin: str,
    claude_env: dict[str, str],
    tmp_path: Path,
) -> None:
    mode, shown = mode_shown
    seen = _cli(
        fake_api,
        claude_bin,
        claude_env,
        tmp_path,
        "--permission-mode",
        mode,
        "--",
        "mode",
        skip_permissions=False,
    )
    assert seen.init is not None, seen.stderr
    assert seen.init["permissionMode"] == shown


def test_permission_mode_refusals_and_skip_permissions_winning(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    bogus = _cli(fake_api, claude_bin, claude_env, tmp_path, "--permission-mode", "x", "--", "p")
    assert (bogus.exit_code, bogus.result) == (1, None)
    assert (
        "Allowed choices are acceptEdits, auto, bypassPermissions, manual, dontAsk, plan"
        in bogus.stderr
    )
    both = _cli(fake_api, claude_bin, claude_env, tmp_path, "--permission-mode", "plan", "--", "p")
    assert both.init is not None
    assert both.init["permissionMode"] == "bypassPermissions"
    if os.getuid() != 0:
        return
    no_sandbox = {k: v for k, v in claude_env.items() if k != "IS_SANDBOX"}
    refused = _cli(
        fake_api,
        claude_bin,
        no_sandbox,
        tmp_path,
        "--permission-mode",
        "bypassPermissions",
        "--",
        "p",
        skip_permissions=False,
    )
    assert (refused.exit_code, refused.result) == (1, None)
    assert "cannot be used with root/sudo privileges" in refused.stderr
    other = _cli(
        fake_api,
        claude_bin,
        no_sandbox,
        tmp_path,
        "--permission-mode",
        "acceptEdits",
        "--",
        "p",
        skip_permissions=False,
    )
    assert other.exit_code == 0, other.stderr


def test_prompt_model_effort_dirs_and_settings_reach_the_request(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    fake_api.on("settings", ToolUse("Bash", {"command": "echo FS=$FROM_SETTINGS"}), Text("ok"))
    work, extra = tmp_path / "work", tmp_path / "extra"  # not inside the cwd
    work.mkdir()
    extra.mkdir()
    seen = _cli(
        fake_api,
        claude_bin,
        claude_env,
        work,
        "--append-system-prompt",
        "APPENDED-42",
        "--add-dir",
        str(extra),
        str(tmp_path / "missing"),
        "--effort",
        "low",
        "--model",
        "haiku",
        "--settings",
        json.dumps({"env": {"FROM_SETTINGS": "json-43"}}),
        "--",
        "settings",
    )
    assert seen.exit_code == 0, seen.stderr
    assert seen.init is not None
    first = fake_api.requests[0]
    assert first["system"][-1]["text"].endswith("APPENDED-42")
    assert "APPENDED-42" not in json.dumps(first["messages"])
    assert seen.init["additional_directories"] == [str(extra)]  # a missing one is dropped
    assert f"Additional working directories:\n  - {extra}" in json.dumps(
        first, ensure_ascii=False
    ).replace("\\n", "\n")
    assert first["output_config"]["effort"] == "low"
    assert seen.init["model"] == first["model"] == "claude-haiku-5-5"
    assert "FS=json-43" in tool_results(fake_api.requests)
    # A settings file works the same; an unknown effort is only a warning.
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"permissions": {"deny": ["Bash"]}}))
    denied = _cli(
        fake_api,
        claude_bin,
        claude_env,
        tmp_path,
        "--settings",
        str(settings),
        "--effort",
        "extreme",
        "--",
        "p",
    )
    assert denied.exit_code == 0, denied.stderr
    assert denied.init is not None
    assert "Bash" not in denied.init["tools"]
    assert "Unknown --effort value 'extreme'" in denied.stderr
    assert fake_api.requests[-1]["output_config"]["effort"] == "medium"


def test_mcp_servers_in_init(
    fake_api: StandinAPI, claude_bin: str, claude_env: dict[str, str], tmp_path: Path
) -> None:
    fake_api.on("use mcp", ToolUse("mcp__stub__echo", {"text": "hi"}), Text("done"))
    stub = {"command": sys.executable, "args": [str(Path(__file__).parent / "mcp_stub.py")]}
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"stub": stub}}))
    seen = _cli(
        fake_api, claude_bin, claude_env, tmp_path, "--mcp-config", str(config), "--", "use mcp"
    )
    assert seen.exit_code == 0, seen.stderr
    assert seen.init is not None
    assert seen.init["mcp_servers"] == [
        {"name": "stub", "status": "connected", "source": "dynamic"}
    ]
    assert "mcp__stub__echo" in seen.init["tools"]
    assert 'echo:{\\"text\\": \\"hi\\"}' in tool_results(fake_api.requests)
    # Inline JSON works too; a server that cannot start is listed as failed, and the
    # run goes on.
    broken = {"mcpServers": {"broken": {"command": str(tmp_path / "no-such-server")}}}
    failed = _cli(
        fake_api, claude_bin, claude_env, tmp_path, "--mcp-config", json.dumps(broken), "--", "p"
    )
    assert failed.exit_code == 0, failed.stderr
    assert failed.init is not None
    assert failed.init["mcp_servers"] == [
        {"name": "broken", "status": "failed", "source": "dynamic"}
    ]
