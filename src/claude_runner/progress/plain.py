"""Progress for a CI log: one plain line per task start, retry, check and finish, and one
at the end of the run. No colours, no cursor movement; times are relative to the run's
start (from the events' ``ts``), so the lines read the same in any log viewer::

    [   0.0s] start   analyze/inspect (attempt 1, model opus)
    [   4.2s] retry   build/code attempt 2 in 5s: rate_limited: API Error: 429 ...
    [   9.1s] check   build/code run 1 failed (exit 1, 2.1s)
    [  12.0s] finish  build/docs failed (agent_error) 3.9s, 1 attempt, $0.0031: ...
    [  12.3s] run failed in 12.3s: 3 succeeded, 1 failed; $0.0054
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TextIO

from claude_runner.progress.state import RunState, _epoch

_REASON = 160


def _short(text: object) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= _REASON else line[: _REASON - 1] + "…"


class PlainView:
    """The observer that writes plain lines to ``stream`` (not a terminal)."""

    def __init__(self, stream: TextIO, redact: Callable[[str], str] = str) -> None:
        self.stream = stream
        self.redact = redact  # events come masked; reasons are masked again, to be sure
        self.state = RunState()
        self.lock = threading.Lock()

    def _at(self, body: dict[str, Any]) -> str:
        ts = _epoch(body.get("ts"))
        start = self.state.started
        offset = ts - start if ts is not None and start is not None else 0.0
        return f"[{offset:7.1f}s]"

    def _line(self, body: dict[str, Any], kind: str) -> str | None:
        key = f"{body.get('stage_id')}/{body.get('task_id')}"
        if kind == "task_start":
            attempt = body.get("attempt") or self.state.task(*key.split("/", 1)).attempt
            model = body.get("model")
            return f"start   {key} (attempt {attempt}" + (f", model {model})" if model else ")")
        if kind == "task_retry":
            delay = body.get("delay_s")
            wait = f" in {delay:g}s" if isinstance(delay, int | float) else ""
            return (
                f"retry   {key} attempt {body.get('attempt')}{wait}: {body.get('kind')}: "
                f"{_short(body.get('reason'))}"
            )
        if kind == "task_check":
            verdict = "passed" if body.get("passed") is True else "failed"
            duration = body.get("duration_s")
            took = f", {duration:.1f}s" if isinstance(duration, int | float) else ""
            return (
                f"check   {key} run {body.get('attempt')} {verdict} "
                f"(exit {body.get('exit_code')}{took})"
            )
        if kind == "task_finish":
            return self._finish(key, body)
        if kind == "plan_finish":
            counts = body.get("counts") or {}
            summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            duration = body.get("duration_s")
            took = f" in {duration:.1f}s" if isinstance(duration, int | float) else ""
            return f"run {body.get('status')}{took}: {summary}; ${self.state.spent():.4f}"
        return None

    def _finish(self, key: str, body: dict[str, Any]) -> str:
        t = self.state.task(*key.split("/", 1))
        status = str(body.get("status"))
        kind = body.get("failure_kind")
        parts = [f"finish  {key} {status}" + (f" ({kind})" if kind else "")]
        duration = body.get("duration_s")
        if isinstance(duration, int | float) and status != "skipped":
            parts.append(f" {duration:.1f}s")
        if t.attempt > 1:
            parts.append(f", {t.attempt} attempts")
        if t.turns is not None:
            parts.append(f", {t.turns} turns")
        if t.cost_usd is not None:
            parts.append(f", ${t.cost_usd:.4f}")
        if status != "succeeded" and body.get("reason"):
            parts.append(f": {_short(body.get('reason'))}")
        return "".join(parts)

    def event(self, body: dict[str, Any]) -> None:
        with self.lock:
            kind = self.state.event(body)
            text = self._line(body, kind) if kind else None
            if text is None:
                return
            try:
                self.stream.write(f"{self._at(body)} {self.redact(text)}\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not stop the run

    def activity(
        self,
        stage_id: str,
        task_id: str,
        tool: str | None,
        turns: int | None,
        cost_usd: float | None,
    ) -> None:
        with self.lock:
            self.state.activity(stage_id, task_id, tool, turns, cost_usd)

    def close(self) -> None:
        return None
