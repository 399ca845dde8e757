"""Running plans in tests: an in-process runner with the fault agent (or the real CLI),
a driver process for signal tests, and readers of the events and the result."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from claude_runner import proc
from claude_runner.pipeline.executor import run_pipeline
from claude_runner.plan.models import Plan, resolve
from claude_runner.plan.resolved import Controls, Rehearse, ResolvedPlan, ResolvedTask, Retries
from claude_runner.plan.values import DEFAULT_RETRY_ON, DEFAULT_WHEN
from claude_runner.rehearsal import Rehearsal
from claude_runner.runtime import Runtime
from tests import fake_agent

Events = list[dict[str, Any]]
REPO = Path(__file__).resolve().parents[1]

DRIVER = r"""
import json, os, signal, sys, threading
from pathlib import Path
from claude_runner.plan.models import Plan, resolve
from claude_runner.plan.resolved import Controls, Rehearse, ResolvedPlan, ResolvedTask, Retries
from claude_runner.plan.values import DEFAULT_RETRY_ON, DEFAULT_WHEN
from claude_runner.pipeline.executor import run_pipeline
from claude_runner.rehearsal import Rehearsal
from claude_runner.runtime import Runtime

spec = json.loads(Path(sys.argv[1]).read_text())
cancel = threading.Event()
got = []

def on_signal(signum, frame):
    got.append(signum)
    cancel.set()

signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
env = {**os.environ, "PIPELINE_WORKSPACES_ROOT": spec["runs_root"]}
rc = run_pipeline(
    resolve(Plan.model_validate(spec["plan"])),
    Runtime.from_env(env, claude_bin=spec["claude_bin"], cancel=cancel),
    workspace=Path(spec["workspace"]),
    plan_path=Path("plan.yml"),
    out=sys.stdout,
)
# VmHWM: peak RSS of this process image (ru_maxrss would carry the parent's across exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
sys.stderr.write(f"maxrss_kb={hwm}\n")
sys.exit(128 + got[0] if got else rc)
"""


def plan_of(*stages: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    return {"version": "v1", "defaults": defaults, "stages": list(stages)}


def stage(sid: str, *prompts: str, mode: str = "sequential", **extra: Any) -> dict[str, Any]:
    tasks = [{"id": f"t{i}", "prompt": p} for i, p in enumerate(prompts)]
    return {"id": sid, "mode": mode, "tasks": tasks, **extra}


class Runner:
    """Runs plans in-process with the fake agent in a scratch workspace."""

    def __init__(self, tmp: Path) -> None:
        self.workspace = tmp / "ws"
        self.workspace.mkdir()
        self.runs_root = tmp / "runs"
        self.claude_bin = fake_agent.install(tmp)
        self.env = {**os.environ, "ANTHROPIC_API_KEY": "sk-test-fake-secret-0123456789"}
        self.tmp = tmp
        self.rehearsal: Rehearsal | None = None

    def run(
        self, plan: dict[str, Any] | ResolvedPlan, cancel: threading.Event | None = None
    ) -> tuple[int, Events]:
        """Run a plan (plain data of a v1 plan, or a resolved plan); exit code, events."""
        out = io.StringIO()
        resolved = plan if isinstance(plan, ResolvedPlan) else resolve(Plan.model_validate(plan))
        code = run_pipeline(
            resolved,
            self.runtime(cancel),
            workspace=self.workspace,
            plan_path=Path("plan.yml"),
            out=out,
        )
        return code, [json.loads(line) for line in out.getvalue().splitlines()]

    def runtime(self, cancel: threading.Event | None = None) -> Runtime:
        """The runtime app.run would build from this runner's environment."""
        env = {**self.env, "PIPELINE_WORKSPACES_ROOT": str(self.runs_root)}
        return Runtime.from_env(
            env, claude_bin=self.claude_bin, cancel=cancel, rehearsal=self.rehearsal
        )

    def spawn_driver(self, plan: dict[str, Any]) -> subprocess.Popen[bytes]:
        spec = self.tmp / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "plan": plan,
                    "workspace": str(self.workspace),
                    "claude_bin": self.claude_bin,
                    "runs_root": str(self.runs_root),
                }
            )
        )
        driver = self.tmp / "driver.py"
        driver.write_text(DRIVER)
        env = {**self.env, "PYTHONPATH": str(REPO / "src")}
        return proc.spawn(
            [sys.executable, str(driver), str(spec)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


def result_of(events: Events) -> dict[str, Any]:
    assert events[-1]["type"] == "pipeline_result"
    return events[-1]


def task(events: Events, stage_id: str, task_id: str) -> dict[str, Any]:
    return next(
        t
        for t in result_of(events)["tasks"]
        if t["stage_id"] == stage_id and t["task_id"] == task_id
    )


def written_files(entry: dict[str, Any]) -> Path:
    """Where the files a worktree task wrote are after the run: its copy, or its
    overlay's upper layer (the mount is released when the task ends)."""
    if entry["workspace_method"] == "overlay":
        return Path(entry["workspace"] + ".upper")
    return Path(entry["workspace"])


def of_type(events: Events, name: str) -> Events:
    return [e for e in events if e["type"] == f"pipeline_event.{name}"]


def marked_processes(plan_run_id: str) -> list[int]:
    """Live processes (any parent) whose environment carries this run's task marker."""
    found = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get("CLAUDE_RUNNER_TASK", "").startswith(plan_run_id + "/"):
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def read_events_until(
    child: subprocess.Popen[bytes], done: threading.Event, sink: list[dict[str, Any]]
) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        sink.append(json.loads(line))
    done.set()


def wait_for(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def fast_retries(max: int = 2) -> Retries:
    """The default retry kinds with backoffs short enough for a test."""
    return Retries(max=max, on=DEFAULT_RETRY_ON, backoff_base_s=0.05, backoff_max_s=0.1)


def tuned(
    plan: dict[str, Any], *, top: dict[str, Any] | None = None, **fields: Any
) -> ResolvedPlan:
    """A v1 plan resolved, then given v2 settings (v2 defaults where none is given) on
    every task: test-friendly names (``timeout``, ``idle_timeout`` in seconds, fractions
    allowed; ``controls`` a mapping with an optional ``env``; ``output_schema`` and
    ``rehearse`` as plain data) become the resolved fields; ``top`` sets plan fields
    (``timeout`` in seconds, ``max_concurrency``, ``budget_usd``)."""
    resolved = resolve(Plan.model_validate(plan))
    fields.setdefault("when", DEFAULT_WHEN)
    renames = {"timeout": "timeout_s", "idle_timeout": "idle_timeout_s"}
    task_fields = {renames.get(k, k): v for k, v in fields.items()}
    controls = task_fields.pop("controls", None)
    if isinstance(controls, dict):
        controls = dict(controls)
        task_fields["env"] = tuple(sorted(controls.pop("env", {}).items()))
        normal: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in controls.items()
        }
        task_fields["controls"] = Controls(**normal)
    elif controls is not None:
        task_fields["controls"] = controls
    if "output_schema" in task_fields:
        task_fields["output_schema_json"] = json.dumps(task_fields.pop("output_schema"))
    if "rehearse" in task_fields:
        task_fields["rehearse"] = rehearse_of(task_fields["rehearse"])
    stages = tuple(
        dataclasses.replace(s, tasks=tuple(dataclasses.replace(t, **task_fields) for t in s.tasks))
        for s in resolved.stages
    )
    plan_fields = {
        renames.get(k, k + "_s" if k == "timeout" else k): v for k, v in (top or {}).items()
    }
    return dataclasses.replace(resolved, stages=stages, version="v2", **plan_fields)


def rehearse_of(data: dict[str, Any] | None) -> Rehearse | None:
    """A ``rehearse:`` mapping resolved as the v2 loader does."""
    if data is None:
        return None
    from claude_runner.plan.cascade import _rehearse  # noqa: PLC0415
    from claude_runner.plan.models_v2 import RehearseSpec  # noqa: PLC0415

    return _rehearse(RehearseSpec.model_validate(data))


def set_task(plan: ResolvedPlan, key: tuple[str, str], **fields: Any) -> ResolvedPlan:
    """The plan with one task's fields replaced (test-friendly names as in ``tuned``)."""
    if "output_schema" in fields:
        fields["output_schema_json"] = json.dumps(fields.pop("output_schema"))
    if "rehearse" in fields:
        fields["rehearse"] = rehearse_of(fields["rehearse"])
    if isinstance(fields.get("controls"), dict):
        fields["controls"] = Controls(**fields["controls"])

    def task_of(t: ResolvedTask) -> ResolvedTask:
        return dataclasses.replace(t, **fields) if t.key == key else t

    stages = tuple(
        dataclasses.replace(s, tasks=tuple(task_of(t) for t in s.tasks)) for s in plan.stages
    )
    return dataclasses.replace(plan, stages=stages)


def v2_plan(data: dict[str, Any]) -> ResolvedPlan:
    """A v2 plan given as plain data, through the real loader (models, graph, rules)."""
    from claude_runner.plan.loader import load_plan_bytes  # noqa: PLC0415

    body = {"version": "v2", **data}
    return resolve(load_plan_bytes(json.dumps(body).encode(), "plan.yml"))
