"""Read one run directory into a ``RunView``: what every report and ``logs`` show.

A run directory may be finished, failed, cancelled, still running, or left behind by a
runner that died (no ``result.json``, a last event line cut in half). Everything is
derived from what is there, each source filling what the others lack:

- ``result.json`` (or the ``pipeline_result`` line that ends ``events.jsonl``): the
  authoritative per-task fields and totals of a finished run;
- ``events.jsonl``: times (the timeline), attempts, retries, checks, and for a run
  without a result, every task's status so far (started but not finished:
  ``unfinished``);
- ``tasks/<stage>/<task>/result.json``: a task's final result, written when it finished,
  so a crashed run still knows those;
- ``plan.json``: the order of stages and tasks, and the graph (``needs``); tasks the
  plan has and no event mentions are ``pending`` in a run without a result;
- the agent logs (``agent.log``): the last ``result`` message gives cost, turns and the
  per-model usage (``model_usage``), read from the file's tail only.

Paths in events and results are absolute paths of the machine that ran it; they are
rebased onto the directory being read (a CI artifact unpacked elsewhere still works),
and the spec's layout (``tasks/<stage>/<task>/agent.log``) and the first executor's
(``<stage>/<task>.log``) are both found. Lines of ``task_output`` events (the agent's
stream again, at verbosity ``vv``) are skipped without being parsed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from claude_runner.errors import RunDirError

STATUSES = ("succeeded", "failed", "cancelled", "skipped")
UNFINISHED = "unfinished"  # started, no task_finish: still running, or the runner died
PENDING = "pending"  # in the plan, never started, and the run has no result
INCOMPLETE = "incomplete"  # run status without a result: running, or the runner died
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
_PREFIX = "pipeline_event."
_OUTPUT_LINE = '"type":"pipeline_event.task_output"'
_RESULT_LINE = '"type":"pipeline_result"'
_DECODER = json.JSONDecoder()
_TAIL = 64 * 1024  # enough for the CLI's result message (a few KB) and what precedes it


def epoch(ts: object) -> float | None:
    """An event's ``ts`` (ISO 8601, UTC) as seconds since the epoch."""
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _refs(value: object) -> list[str]:
    """Needs as refs: ``"stage/task"`` strings, or ``[stage, task]`` pairs."""
    if not isinstance(value, list):
        return []
    found = []
    for item in value:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
            found.append(f"{item[0]}/{item[1]}")
    return found


@dataclass
class ModelUsage:
    """Tokens and cost of one model in one task (from the CLI's ``modelUsage``)."""

    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def add(self, other: ModelUsage) -> None:
        self.cost_usd += other.cost_usd
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens


@dataclass
class AttemptView:
    """One attempt of a task (v1 runs have exactly one per started task)."""

    attempt: int
    status: str = UNFINISHED
    failure_kind: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    cost_usd: float | None = None
    cost_estimated: bool = False
    session_id: str | None = None
    log: Path | None = None
    start: float | None = None
    end: float | None = None


@dataclass
class CheckView:
    """One run of a task's verify gate (``task_check``)."""

    run: int
    exit_code: int | None
    duration_s: float | None
    passed: bool
    log: Path | None
    ts: float | None


@dataclass
class TaskView:
    stage_id: str
    task_id: str
    status: str = PENDING
    failure_kind: str | None = None
    reason: str | None = None
    model: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    duration_s: float | None = None
    start: float | None = None
    end: float | None = None
    cost_usd: float | None = None
    cost_estimated: bool = False
    usage: dict[str, int] = field(default_factory=dict)
    num_turns: int | None = None
    result: str | None = None
    branch: str | None = None
    patch: str | None = None
    changed_files: int | None = None
    session_id: str | None = None
    workspace_mode: str | None = None
    workspace_method: str | None = None
    instance_of: str | None = None
    needs: list[str] = field(default_factory=list)
    attempts: list[AttemptView] = field(default_factory=list)
    checks: list[CheckView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    secrets_in_changes: list[str] = field(default_factory=list)
    log: Path | None = None
    stderr_log: Path | None = None
    key: str = field(init=False)  # stage/task

    def __post_init__(self) -> None:
        self.key = f"{self.stage_id}/{self.task_id}"

    def attempt(self, number: int) -> AttemptView:
        for a in self.attempts:
            if a.attempt == number:
                return a
        made = AttemptView(attempt=number)
        self.attempts.append(made)
        self.attempts.sort(key=lambda a: a.attempt)
        return made


@dataclass
class StageView:
    id: str
    mode: str | None = None
    status: str | None = None
    start: float | None = None
    end: float | None = None
    task_keys: list[str] = field(default_factory=list)


@dataclass
class RunView:
    run_dir: Path
    plan_run_id: str
    status: str = INCOMPLETE
    complete: bool = False
    plan_path: str | None = None
    version: str | None = None
    runner_version: str | None = None
    rehearsal: bool = False
    start: float | None = None
    end: float | None = None
    duration_s: float | None = None
    stages: list[StageView] = field(default_factory=list)
    tasks: list[TaskView] = field(default_factory=list)
    cost_usd: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    num_turns: int = 0
    budget: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for t in self.tasks:
            found[t.status] = found.get(t.status, 0) + 1
        return found

    def find(self, ref: str) -> TaskView:
        """A task by ``stage/task``, or by its bare id when only one task has it."""
        if "/" in ref:
            stage_id, _, task_id = ref.partition("/")
            for t in self.tasks:
                if (t.stage_id, t.task_id) == (stage_id, task_id):
                    return t
        else:
            found = [t for t in self.tasks if t.task_id == ref]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                names = ", ".join(t.key for t in found)
                raise RunDirError(f"task {ref!r} is ambiguous in this run: use one of {names}")
        known = ", ".join(t.key for t in self.tasks[:20]) or "none"
        raise RunDirError(f"no task {ref!r} in run {self.plan_run_id} (tasks: {known})")


class _Reader:
    """Builds a RunView; one per read."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.base = str(run_dir).rstrip("/") + "/"
        self.view = RunView(run_dir=run_dir, plan_run_id=run_dir.name)
        self.tasks: dict[tuple[str, str], TaskView] = {}
        self.stages: dict[str, StageView] = {}
        self.origin: str | None = None  # the run directory's path where it ran
        self.result: dict[str, Any] | None = None
        self.plan_seen = False

    # -- sources ----------------------------------------------------------------------

    def json_file(self, name: str) -> Any:
        path = self.run_dir / name
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.view.problems.append(f"{name}: {exc.strerror}")
            return None
        try:
            return json.loads(text)
        except ValueError:
            self.view.problems.append(f"{name}: not valid JSON")
            return None

    def events(self) -> Iterator[dict[str, Any]]:
        try:
            data = (self.run_dir / "events.jsonl").read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.view.problems.append(f"events.jsonl: {exc.strerror}")
            return
        # result.json holds the same line as the last event: it is read once, from there.
        skip_result = (self.run_dir / "result.json").is_file()
        decode = _DECODER.decode
        for number, line in enumerate(data.decode("utf-8", "replace").split("\n"), 1):
            if not line or _OUTPUT_LINE in line or (skip_result and _RESULT_LINE in line):
                continue
            try:
                body = decode(line)
            except ValueError:
                self.view.problems.append(f"events.jsonl:{number}: not a JSON line (cut off?)")
                continue
            if isinstance(body, dict):
                yield body

    # -- helpers ----------------------------------------------------------------------

    def task(self, stage_id: str, task_id: str) -> TaskView:
        key = (stage_id, task_id)
        found = self.tasks.get(key)
        if found is None:
            found = self.tasks[key] = TaskView(stage_id=stage_id, task_id=task_id)
            self.stage(stage_id).task_keys.append(found.key)
        return found

    def stage(self, stage_id: str) -> StageView:
        found = self.stages.get(stage_id)
        if found is None:
            found = self.stages[stage_id] = StageView(id=stage_id)
        return found

    def path(self, value: object) -> Path | None:
        """A path from an event or result, rebased onto the directory being read (string
        work: building Paths by joining was a third of the time of a 1,000-task read)."""
        if not isinstance(value, str) or not value:
            return None
        origin = self.origin_prefix
        if origin and value.startswith(origin):
            return Path(self.base + value[len(origin) :])
        return Path(value if value.startswith("/") else self.base + value)

    @property
    def origin_prefix(self) -> str | None:
        return self.origin.rstrip("/") + "/" if self.origin else None

    # -- plan -------------------------------------------------------------------------

    def read_meta(self) -> None:
        meta = self.json_file("run.json")
        if isinstance(meta, dict):
            v = self.view
            v.plan_path = _str(meta.get("plan_path") or meta.get("plan"))
            v.version = _str(meta.get("version"))
            v.runner_version = _str(meta.get("runner_version"))
            v.rehearsal = meta.get("rehearsal") is True
            v.start = epoch(meta.get("started"))
        plan = self.json_file("plan.json")
        if isinstance(plan, dict):
            self.plan_seen = True
            self.read_plan(plan)

    def read_plan(self, plan: dict[str, Any]) -> None:
        self.view.version = self.view.version or _str(plan.get("version"))
        stages = plan.get("stages")
        if not isinstance(stages, list):
            return
        previous: list[str] = []
        for s in stages:
            if not isinstance(s, dict) or not isinstance(s.get("id"), str):
                continue
            stage = self.stage(s["id"])
            stage.mode = _str(s.get("mode"))
            tasks = [t for t in s.get("tasks") or [] if isinstance(t, dict)]
            keys: list[str] = []
            for t in tasks:
                if not isinstance(t.get("id"), str):
                    continue
                view = self.task(stage.id, t["id"])
                view.model = _str(t.get("model"))
                view.workspace_mode = _str(t.get("workspace"))
                needs = _refs(t.get("needs"))
                if needs or isinstance(t.get("needs"), list):
                    view.needs = needs
                else:  # v1: the previous stage, and the previous task of a sequential one
                    view.needs = list(previous)
                    if stage.mode == "sequential" and keys:
                        view.needs.append(keys[-1])
                keys.append(view.key)
            previous = keys

    # -- events -----------------------------------------------------------------------

    def read_events(self) -> None:
        for body in self.events():
            kind = body.get("type")
            if kind == "pipeline_result":
                self.result = body
                continue
            if not isinstance(kind, str) or not kind.startswith(_PREFIX):
                continue
            handler = getattr(self, "on_" + kind[len(_PREFIX) :], None)
            if handler is not None:
                handler(body, epoch(body.get("ts")))

    def on_plan_start(self, e: dict[str, Any], ts: float | None) -> None:
        v = self.view
        v.plan_run_id = _str(e.get("plan_run_id")) or v.plan_run_id
        v.plan_path = v.plan_path or _str(e.get("plan_path"))
        v.version = v.version or _str(e.get("version"))
        v.rehearsal = v.rehearsal or e.get("rehearsal") is True
        v.start = ts if ts is not None else v.start
        self.origin = _str(e.get("run_dir"))
        if _num(e.get("budget_usd")) is not None and v.budget is None:
            v.budget = {"limit_usd": _num(e.get("budget_usd"))}

    def on_stage_start(self, e: dict[str, Any], ts: float | None) -> None:
        if isinstance(e.get("stage_id"), str):
            stage = self.stage(e["stage_id"])
            stage.mode = stage.mode or _str(e.get("mode"))
            stage.start = ts

    def on_stage_finish(self, e: dict[str, Any], ts: float | None) -> None:
        if isinstance(e.get("stage_id"), str):
            stage = self.stage(e["stage_id"])
            stage.status = _str(e.get("status"))
            stage.end = ts

    def _task_of(self, e: dict[str, Any]) -> TaskView | None:
        sid, tid = e.get("stage_id"), e.get("task_id")
        if isinstance(sid, str) and isinstance(tid, str):
            return self.task(sid, tid)
        return None

    def on_task_start(self, e: dict[str, Any], ts: float | None) -> None:
        t = self._task_of(e)
        if t is None:
            return
        number = _int(e.get("attempt")) or len(t.attempts) + 1
        attempt = t.attempt(number)
        attempt.start = ts
        attempt.log = self.path(e.get("log"))
        t.status = UNFINISHED
        t.start = t.start if t.start is not None else ts
        t.model = _str(e.get("model")) or t.model
        t.workspace_mode = _str(e.get("workspace_mode")) or t.workspace_mode
        t.workspace_method = _str(e.get("workspace_method")) or t.workspace_method
        t.instance_of = _str(e.get("instance_of")) or t.instance_of
        t.log = attempt.log or t.log

    def on_task_session_bind(self, e: dict[str, Any], ts: float | None) -> None:
        t = self._task_of(e)
        if t is not None:
            t.session_id = _str(e.get("session_id"))
            if t.attempts:
                t.attempts[-1].session_id = t.session_id

    def on_task_retry(self, e: dict[str, Any], ts: float | None) -> None:
        t = self._task_of(e)
        if t is None:
            return
        following = _int(e.get("attempt")) or len(t.attempts) + 1
        ended = t.attempt(following - 1)
        ended.status = "failed"
        ended.failure_kind = _str(e.get("kind"))
        ended.reason = _str(e.get("reason"))
        ended.end = ts

    def on_task_check(self, e: dict[str, Any], ts: float | None) -> None:
        t = self._task_of(e)
        if t is not None:
            t.checks.append(
                CheckView(
                    run=_int(e.get("attempt")) or len(t.checks) + 1,
                    exit_code=_int(e.get("exit_code")),
                    duration_s=_num(e.get("duration_s")),
                    passed=e.get("passed") is True,
                    log=self.path(e.get("log")),
                    ts=ts,
                )
            )

    def on_task_finish(self, e: dict[str, Any], ts: float | None) -> None:
        t = self._task_of(e)
        if t is None:
            return
        t.status = _str(e.get("status")) or t.status
        t.failure_kind = _str(e.get("failure_kind"))
        t.reason = _str(e.get("reason"))
        t.exit_code = _int(e.get("exit_code"))
        t.signal = _str(e.get("signal"))
        t.duration_s = _num(e.get("duration_s"))
        t.session_id = _str(e.get("session_id")) or t.session_id
        t.branch = _str(e.get("branch"))
        t.patch = _str(e.get("patch"))
        t.changed_files = _int(e.get("changed_files"))
        t.cost_usd = _num(e.get("cost_usd")) if "cost_usd" in e else t.cost_usd
        t.end = ts
        if t.attempts:
            last = t.attempts[-1]
            last.status = t.status
            last.failure_kind = t.failure_kind
            last.reason = t.reason
            last.exit_code = t.exit_code
            last.end = ts

    def on_plan_finish(self, e: dict[str, Any], ts: float | None) -> None:
        self.view.status = _str(e.get("status")) or self.view.status
        self.view.end = ts
        self.view.duration_s = _num(e.get("duration_s"))

    # -- results ----------------------------------------------------------------------

    def take_task_result(self, r: dict[str, Any]) -> None:
        """Merge one task entry of a result (the run's, or the task's own file)."""
        sid, tid = r.get("stage_id"), r.get("task_id")
        if not isinstance(sid, str) or not isinstance(tid, str):
            return
        t = self.task(sid, tid)
        t.status = _str(r.get("status")) or t.status
        for name in ("failure_kind", "reason", "signal", "session_id", "result", "branch"):
            if name in r:
                setattr(t, name, _str(r.get(name)))
        t.patch = _str(r.get("patch")) if "patch" in r else t.patch
        t.model = _str(r.get("model")) or t.model
        t.exit_code = _int(r.get("exit_code")) if "exit_code" in r else t.exit_code
        t.duration_s = _num(r.get("duration_s")) if "duration_s" in r else t.duration_s
        t.num_turns = _int(r.get("num_turns"))
        cost = r.get("cost_usd", r.get("total_cost_usd"))
        t.cost_usd = _num(cost) if cost is not None else t.cost_usd
        t.cost_estimated = r.get("cost_estimated") is True or t.cost_estimated
        usage = r.get("usage")
        if isinstance(usage, dict):
            t.usage = {k: int(usage[k]) for k in USAGE_KEYS if _int(usage.get(k)) is not None}
        t.changed_files = _int(r.get("changed_files")) if "changed_files" in r else t.changed_files
        t.workspace_mode = _str(r.get("workspace_mode")) or t.workspace_mode
        t.workspace_method = _str(r.get("workspace_method")) or t.workspace_method
        t.instance_of = _str(r.get("instance_of")) or t.instance_of
        needs = _refs(r.get("needs"))
        if needs:  # an empty list from a v1 run: keep the order the plan gave
            t.needs = needs
        for name in ("notes", "secrets_in_changes"):
            if isinstance(r.get(name), list):
                setattr(t, name, [str(n) for n in r[name]])
        # Paths the events gave are kept (each Path costs; these are the same files).
        t.log = t.log or self.path(r.get("log"))
        t.stderr_log = t.stderr_log or self.path(r.get("stderr_log"))
        for a in r.get("attempts") or []:
            if isinstance(a, dict) and _int(a.get("attempt")) is not None:
                self.take_attempt(t, a)
        for n, c in enumerate(r.get("checks") or [], 1):
            if isinstance(c, dict) and len(t.checks) < n:
                t.checks.append(
                    CheckView(
                        run=_int(c.get("check")) or n,
                        exit_code=_int(c.get("exit_code")),
                        duration_s=_num(c.get("duration_s")),
                        passed=c.get("passed") is True,
                        log=self.path(c.get("log")),
                        ts=None,
                    )
                )

    def take_attempt(self, t: TaskView, a: dict[str, Any]) -> None:
        view = t.attempt(int(a["attempt"]))
        view.status = _str(a.get("status")) or view.status
        view.failure_kind = _str(a.get("failure_kind"))
        view.reason = _str(a.get("reason"))
        view.exit_code = _int(a.get("exit_code"))
        view.duration_s = _num(a.get("duration_s"))
        view.cost_usd = _num(a.get("cost_usd"))
        view.cost_estimated = a.get("cost_estimated") is True
        view.session_id = _str(a.get("session_id")) or view.session_id
        log = a.get("log")
        if view.log is None or (isinstance(log, str) and not log.endswith("/agent.log")):
            view.log = self.path(log) or view.log

    def read_result(self) -> None:
        result = self.json_file("result.json")
        if not isinstance(result, dict):
            result = self.result
        if not isinstance(result, dict) or result.get("type") != "pipeline_result":
            return
        v = self.view
        v.complete = True
        v.status = _str(result.get("status")) or v.status
        v.plan_run_id = _str(result.get("plan_run_id")) or v.plan_run_id
        self.origin = self.origin or _str(result.get("run_dir"))
        v.version = v.version or _str(result.get("version"))
        v.rehearsal = v.rehearsal or result.get("rehearsal") is True
        if isinstance(result.get("budget"), dict):
            v.budget = result["budget"]
        totals = result.get("totals")
        if isinstance(totals, dict):
            v.duration_s = _num(totals.get("duration_s")) or v.duration_s
        for r in result.get("tasks") or []:
            if isinstance(r, dict):
                self.take_task_result(r)

    def read_task_dirs(self) -> None:
        """Tasks' own result files (and tasks no event named): what a crashed run kept."""
        root = self.run_dir / "tasks"
        if not root.is_dir():
            return
        for stage_dir in sorted(root.iterdir()):
            if not stage_dir.is_dir():
                continue
            for task_dir in sorted(stage_dir.iterdir()):
                if not task_dir.is_dir():
                    continue
                known = self.tasks.get((stage_dir.name, task_dir.name))
                if known is not None and known.status not in (UNFINISHED, PENDING):
                    continue
                data = self.json_file(f"tasks/{stage_dir.name}/{task_dir.name}/result.json")
                if isinstance(data, dict):
                    data.setdefault("stage_id", stage_dir.name)
                    data.setdefault("task_id", task_dir.name)
                    self.take_task_result(data)
                elif (task_dir / "agent.log").exists():
                    t = self.task(stage_dir.name, task_dir.name)
                    if t.status == PENDING:
                        t.status = UNFINISHED

    # -- finishing --------------------------------------------------------------------

    def locate_logs(self, t: TaskView) -> None:
        spec = f"{self.base}tasks/{t.stage_id}/{t.task_id}/"
        legacy = f"{self.base}{t.stage_id}/{t.task_id}"
        t.log = _first_file(t.log, spec + "agent.log", legacy + ".log")
        t.stderr_log = _first_file(t.stderr_log, spec + "stderr.log", legacy + ".stderr.log")
        for a in t.attempts:
            if a is t.attempts[-1]:
                a.log = t.log  # the current log is the last attempt's
                continue
            # An earlier attempt's files were moved aside when the next one started.
            moved = f"{spec}attempt-{a.attempt}/agent.log"
            if os.path.isfile(moved):
                a.log = Path(moved)
            elif a.log is None or a.log == t.log or not a.log.is_file():
                a.log = None

    def finish(self) -> RunView:
        v = self.view
        order = list(self.stages)
        v.stages = [self.stages[s] for s in order]
        by_key = {t.key: t for t in self.tasks.values()}
        v.tasks = [by_key[k] for s in order for k in self.stages[s].task_keys]
        if not self.plan_seen and not any(t.needs for t in v.tasks):
            _v1_needs(v)
        for t in v.tasks:
            self.locate_logs(t)
            if t.status == UNFINISHED and t.log is not None and t.num_turns is None:
                take_log_result(t)
            if t.duration_s is None and t.start is not None and t.end is not None:
                t.duration_s = round(t.end - t.start, 3)
            for a in t.attempts:
                if a.duration_s is None and a.start is not None and a.end is not None:
                    a.duration_s = round(a.end - a.start, 3)
        costs = [t.cost_usd for t in v.tasks if t.cost_usd is not None]
        v.cost_usd = round(sum(costs), 6)
        v.usage = {k: sum(t.usage.get(k, 0) for t in v.tasks) for k in USAGE_KEYS}
        v.num_turns = sum(t.num_turns or 0 for t in v.tasks)
        if v.end is None:
            ends = [t.end for t in v.tasks if t.end is not None]
            v.end = max(ends) if ends else None
        if v.start is None:
            starts = [t.start for t in v.tasks if t.start is not None]
            v.start = min(starts) if starts else None
        if v.duration_s is None and v.start is not None and v.end is not None:
            v.duration_s = round(v.end - v.start, 3)
        return v


def _first_file(known: Path | None, *candidates: str) -> Path | None:
    """``known`` when it is a file, else the first candidate that is one."""
    if known is not None and os.path.isfile(known):
        return known
    return next((Path(c) for c in candidates if os.path.isfile(c)), None)


def _v1_needs(view: RunView) -> None:
    """No plan.json (the first executor wrote none): v1's graph, from the stages seen."""
    by_key = {t.key: t for t in view.tasks}
    previous: list[str] = []
    for stage in view.stages:
        for n, key in enumerate(stage.task_keys):
            needs = list(previous)
            if stage.mode == "sequential" and n:
                needs.append(stage.task_keys[n - 1])
            by_key[key].needs = needs
        previous = stage.task_keys


def read_run(run_dir: Path) -> RunView:
    """Everything the reports show about the run in ``run_dir``."""
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    markers = ("events.jsonl", "result.json", "run.json", "plan.json")
    if not any((run_dir / m).exists() for m in markers):
        raise RunDirError(
            f"{run_dir} is not a run directory (no events.jsonl, result.json, run.json "
            "or plan.json)"
        )
    reader = _Reader(run_dir)
    reader.read_meta()
    reader.read_events()
    reader.read_result()
    if not reader.view.complete:
        reader.read_task_dirs()
    return reader.finish()


# --- the agent log's tail -----------------------------------------------------------


def log_result(path: Path) -> dict[str, Any] | None:
    """The CLI's last ``result`` message in a log, read from the file's tail (8 KB, then
    64 KB when the last lines are longer)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            for chunk in (8 * 1024, _TAIL):
                f.seek(max(0, size - chunk))
                found = _last_result(f.read(), whole=chunk >= size)
                if found is not None or chunk >= size:
                    return found
    except OSError:
        return None
    return None


def _last_result(tail: bytes, *, whole: bool) -> dict[str, Any] | None:
    lines = tail.split(b"\n")
    if not whole:
        lines = lines[1:]  # the first is cut
    for line in reversed(lines):
        if b'"result"' not in line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("type") == "result":
            return message
    return None


def take_log_result(t: TaskView) -> None:
    """Cost, turns and usage of a task the run has no result for, from its log."""
    message = log_result(t.log) if t.log is not None else None
    if message is None:
        return
    t.cost_usd = _num(message.get("total_cost_usd"))
    t.num_turns = _int(message.get("num_turns"))
    usage = message.get("usage")
    if isinstance(usage, dict):
        t.usage = {k: int(usage[k]) for k in USAGE_KEYS if _int(usage.get(k)) is not None}
    if t.result is None:
        t.result = _str(message.get("result"))


def model_usage(t: TaskView) -> dict[str, ModelUsage]:
    """Tokens and cost per model, summed over the task's attempts (from each attempt's
    log); a task without any is counted under its configured model (or ``default``)."""
    found: dict[str, ModelUsage] = {}
    logs = [a.log for a in t.attempts if a.log is not None] or ([t.log] if t.log else [])
    for log in dict.fromkeys(logs):
        message = log_result(log)
        per_model = message.get("modelUsage") if message else None
        if not isinstance(per_model, dict):
            continue
        for name, u in per_model.items():
            if not isinstance(u, dict):
                continue
            found.setdefault(str(name), ModelUsage()).add(
                ModelUsage(
                    cost_usd=_num(u.get("costUSD")) or 0.0,
                    input_tokens=_int(u.get("inputTokens")) or 0,
                    output_tokens=_int(u.get("outputTokens")) or 0,
                    cache_read_input_tokens=_int(u.get("cacheReadInputTokens")) or 0,
                    cache_creation_input_tokens=_int(u.get("cacheCreationInputTokens")) or 0,
                )
            )
    if not found and (t.cost_usd or any(t.usage.values())):
        found[t.model or "default"] = ModelUsage(
            cost_usd=t.cost_usd or 0.0,
            input_tokens=t.usage.get("input_tokens", 0),
            output_tokens=t.usage.get("output_tokens", 0),
            cache_read_input_tokens=t.usage.get("cache_read_input_tokens", 0),
            cache_creation_input_tokens=t.usage.get("cache_creation_input_tokens", 0),
        )
    return found
