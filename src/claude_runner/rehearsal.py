"""Rehearsals (``--rehearse``): any plan, or one prompt, run for $0 with the real CLI
against the built-in stand-in model.

The stand-in Messages API (``claude_runner.standin``) runs on 127.0.0.1 inside the
runner's process. Every task attempt gets a fresh dummy API key, and the stand-in answers
the requests sent with it by the task's script (``rehearse:`` in a v2 plan; the default
script otherwise: no tool calls, the prompt echoed as the result, a structured output
that satisfies the task's ``output_schema``). The agent's environment points the CLI at
the stand-in and holds no real credential (every variable that could authenticate or
route it elsewhere is removed, the runner's secrets included). Everything else is the
real thing: workspaces, git preservation, retries, budgets, events, result, reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from claude_runner.standin.env import agent_env, new_api_key
from claude_runner.standin.script import Script
from claude_runner.standin.server import StandinAPI

if TYPE_CHECKING:
    from claude_runner.plan.resolved import Rehearse


def script_of(rehearse: Rehearse | None) -> Script | None:
    """The stand-in's script for a plan task's resolved ``rehearse:`` (None: the
    default script)."""
    if rehearse is None:
        return None
    tools: list[dict[str, Any]] = []
    for name, input_json in rehearse.tools:
        value = json.loads(input_json)
        tools.append({"bash": value["command"]} if name == "bash" else {name: value})
    data: dict[str, Any] = {
        "tools": tools,
        "result": rehearse.result,
        "errors_before_success": rehearse.errors_before_success,
    }
    if rehearse.output_json is not None:
        data["output"] = json.loads(rehearse.output_json)
    if rehearse.error is not None:
        data["error"] = {
            "status": rehearse.error.status,
            "retry_after": rehearse.error.retry_after_s,
            "message": rehearse.error.message,
        }
    usage = {
        k: v
        for k, v in (
            ("input_tokens", rehearse.input_tokens),
            ("output_tokens", rehearse.output_tokens),
        )
        if v is not None
    }
    if usage:
        data["usage"] = usage
    if rehearse.delay_s is not None:
        data["delay"] = rehearse.delay_s
    return Script.model_validate(data)


class Rehearsal:
    """The stand-in model of one rehearsal, and the keys of the attempts it answers."""

    def __init__(self, *, secret_names: Iterable[str] = ()) -> None:
        self._secret_names = tuple(secret_names)
        self.api = StandinAPI().start()
        self.api.default_script(Script())

    def assign(
        self, script: Mapping[str, Any] | Script | None, *, attempt: int = 1, task: str = ""
    ) -> str:
        """A fresh key for one attempt, answered by ``script`` (the default script when
        None); ``release`` it when the attempt is over."""
        key = new_api_key()
        if script is None:
            plan_script = Script()
        elif isinstance(script, Script):
            plan_script = script
        else:
            plan_script = Script.model_validate(dict(script))
        self.api.assign(key, plan_script, attempt=attempt, task=task)
        return key

    def agent_env(self, base: Mapping[str, str], key: str) -> dict[str, str]:
        """The environment of a CLI whose requests carry ``key``."""
        return agent_env(base, url=self.api.url, api_key=key, remove=self._secret_names)

    def release(self, key: str) -> None:
        self.api.release(key)

    def close(self) -> None:
        self.api.stop()

    def __enter__(self) -> Rehearsal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
