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

from collections.abc import Iterable, Mapping
from typing import Any

from claude_runner.standin.env import agent_env, new_api_key
from claude_runner.standin.script import Script
from claude_runner.standin.server import StandinAPI


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
