"""Plan loading cost: the runner's ``load_plan`` versus a bare YAML load, and the worst
input up to the size limit.

Line 1: a generated v1 plan of 1,000 tasks (100 stages x 10, a mix of sequential and
parallel stages, inline prompts and prompt files, per-level settings) is read both ways,
side by side and alternating (runner, YAML load, runner, ...), ``ROUNDS`` times each; the
median of each is compared. Like for like: both sides parse with LibYAML (the runner
reads its events, ``yaml.load`` with ``CSafeLoader`` builds the same data), so the ratio
is the price of position tracking, duplicate-key, tag and character checks, limits,
pydantic validation, the graph and the cascade (``resolve``). Goal: at most 3.0.

Line 2: the same for a v2 plan of 1,000 tasks with needs across stages, templates in
prompts, checks and env, fan-outs and guardrails (``plan_v2_text``). Goal: at most 3.0.

Line 3: adversarial shapes (``worst_shapes``), each close to the 1 MiB limit or to one
of the loader's own limits, each loaded in a fresh interpreter that reports the wall
time of ``load_plan`` + ``resolve`` and its peak RSS (imports included). Goal: every one
accepted or refused within 1 s and 200 MB.

Prints details on stderr and exactly these lines on stdout::

    plan_load: runner/safe_load=X.XX
    plan_load_v2: runner/safe_load=X.XX
    plan_load_worst: max_s=X.XX max_mb=N (shape=NAME, NAME)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from claude_runner import proc  # noqa: E402
from claude_runner.plan.loader import MAX_PLAN_BYTES, load_plan  # noqa: E402
from claude_runner.plan.models import resolve  # noqa: E402
from claude_runner.plan.rules import MAX_TASKS  # noqa: E402
from claude_runner.plan.yamlsrc import MAX_ALIAS_NODES, MAX_DEPTH, MAX_NODES  # noqa: E402

ROUNDS = 5
STAGES = 100
TASKS_PER_STAGE = 10


def plan_text(stages: int = STAGES, per_stage: int = TASKS_PER_STAGE) -> str:
    lines = [
        "version: v1",
        "defaults:",
        "  model: sonnet",
        "  verbosity: stream-json",
        "  on_error: continue",
        "  workspace: shared",
        "stages:",
    ]
    for s in range(stages):
        parallel = s % 2 == 1
        lines += [f"  - id: stage-{s:03d}", f"    mode: {'parallel' if parallel else 'sequential'}"]
        if parallel:
            lines += ["    max_parallel: 4", "    workspace: worktree"]
        lines.append("    tasks:")
        for t in range(per_stage):
            lines.append(f"      - id: task-{t:02d}")
            if t % 3 == 0:
                lines.append(f"        prompt_file: prompts/stage-{s:03d}/task-{t:02d}.md")
            else:
                lines.append(
                    f'        prompt: "Stage {s}, task {t}: review the module, list the risks '
                    'and fix what is broken; keep the public API stable."'
                )
            if t % 4 == 0:
                lines.append("        model: opus")
            if parallel and t % 5 == 0:
                lines += ["        workspace: shared", "        read_only: true"]
    return "\n".join(lines) + "\n"


def plan_v2_text(stages: int = STAGES, per_stage: int = TASKS_PER_STAGE) -> str:
    """A v2 plan of ``stages`` x ``per_stage`` tasks: needs across stages, templates in
    prompts, env and checks, guardrails at every level (issue 12's case)."""
    lines = [
        "version: v2",
        "max_concurrency: 8",
        "budget_usd: 50",
        "defaults:",
        "  model: sonnet",
        "  timeout: 30m",
        "  retries: {max: 2, on: [rate_limited, crash], backoff: {base: 5s, max: 2m}}",
        "  env: {LOG_LEVEL: info, TOKEN: '${{ env.GH_TOKEN }}'}",
        "stages:",
    ]
    for s in range(stages):
        parallel = s % 2 == 1
        lines += [f"  - id: stage-{s:03d}", f"    mode: {'parallel' if parallel else 'sequential'}"]
        if parallel:
            lines += ["    max_parallel: 4", "    workspace: worktree"]
        if s >= 2:
            lines.append(f"    needs: [stage-{s - 2:03d}/*]")
        lines.append("    tasks:")
        for t in range(per_stage):
            lines.append(f"      - id: task-{t:02d}")
            if s > 0 and t % 2 == 0:
                lines.append(f"        needs: [stage-{s - 1:03d}/task-{t:02d}]")
                upstream = f"stages.stage-{s - 1:03d}.tasks.task-{t:02d}.result"
                lines.append(
                    f'        prompt: "Stage {s}, task {t}: fix what '
                    f'${{{{ {upstream} }}}} reported; keep the API stable."'
                )
            else:
                lines.append(f'        prompt: "Stage {s}, task {t}: keep the API stable."')
            if t % 3 == 0:
                lines.append(f'        check: "pytest -q tests/${{{{ item }}}}/{t}"')
                lines.append("        for_each: [a, b]")
            if t % 4 == 0:
                lines += ["        timeout: 1h", "        when: ${{ success() }}"]
    return "\n".join(lines) + "\n"


# --- the worst shapes -----------------------------------------------------------------------


def _fill(head: str, item: str, tail: str, *, count: int | None = None, sep: str = "") -> str:
    """``head + item * n + tail``, n as large as fits in the size limit (or ``count``)."""
    room = MAX_PLAN_BYTES - len((head + tail).encode())
    n = room // len((item + sep).encode())
    if count is not None:
        n = min(n, count)
    return head + sep.join([item] * n) + tail


def _numbered(head: str, template: str, tail: str, count: int, sep: str = "") -> str:
    """``head``, ``template`` formatted with i = 0, 1, ... (``count`` or as many as fit)."""
    room = MAX_PLAN_BYTES - len((head + tail).encode())
    items = []
    for i in range(count):
        item = template.format(i=i)
        room -= len((item + sep).encode())
        if room < 0:
            break
        items.append(item)
    return head + sep.join(items) + tail


def worst_shapes() -> dict[str, str]:
    """Inputs that stress one part of the loader each, all within the size limit."""
    v1 = "version: v1\n"
    task = "{id: t, prompt: p}"
    bad_task = (
        '{id: "a/b", prompt: "", model: x, verbosity: y, on_error: z, workspace: w, '
        "read_only: 1, allow_shared_writes: 2}"
    )
    deep = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    shapes = {
        "flow_list": _fill(v1 + "x: [", "1", "1]\n", sep=","),
        "block_list": _fill(v1 + "x:\n", "- 1\n", ""),
        "flow_empty_maps": _fill(v1 + "stages: [", "{}", "{}]\n", sep=","),
        "many_stages": _numbered(
            v1 + "stages: [", "{{id: s{i}, tasks: [{{id: t, prompt: p}}]}}", "]\n", MAX_TASKS, ","
        ),
        "many_tasks": _numbered(
            v1 + "stages: [{id: s, mode: parallel, tasks: [",
            "{{id: t{i}, prompt: p, read_only: true}}",
            "]}]\n",
            MAX_TASKS,
            ",",
        ),
        "too_many_tasks": _fill(v1 + "stages: [{id: s, tasks: [", task, "]}]\n", sep=","),
        "broken_tasks": _fill(
            v1 + "stages: [{id: s, tasks: [", bad_task, "]}]\n", count=MAX_TASKS, sep=","
        ),
        "broken_stages": _fill(
            v1 + "stages: [", "{id: a/b, tasks: [" + bad_task + "]}", "]\n", sep=","
        ),
        "unknown_keys_top": _numbered(v1, "k{i}: 1\n", "", MAX_NODES // 2 - 10),
        "unknown_keys_task": _numbered(
            v1 + "stages: [{id: s, tasks: [{id: t, prompt: p, ",
            "k{i}: 1",
            "}]}]\n",
            MAX_NODES // 2 - 20,
            ", ",
        ),
        "duplicate_keys": _fill(v1 + "stages: []\n", "k: 1\n", ""),
        "deep_lists": _fill(v1 + "x: [", deep, deep + "]\n", sep=","),
        "long_plain_scalar": _fill(v1 + "stages: [{id: s, tasks: [{id: t, prompt: ", "x", "}]}]\n"),
        "long_escapes": _fill(
            v1 + 'stages: [{id: s, tasks: [{id: t, prompt: "', "\\u00e9", '"}]}]\n'
        ),
        "long_multibyte": _fill(
            v1 + "stages: [{id: s, tasks: [{id: t, prompt: ", "\U0001f600", "}]}]\n"
        ),
        "long_key": _fill(v1 + "stages: []\n", "k", ": 1\n"),
        "nul_strings": _fill(v1 + "x: [", '"\\0"', '"\\0"]\n', sep=","),
        "anchors": _numbered(v1 + "x: [", "&a{i} x", "]\n", MAX_NODES - 10, ","),
        "aliases": _fill(
            v1 + "a: &a [x]\nx: [", "*a", "*a]\n", count=MAX_ALIAS_NODES // 2, sep=","
        ),
        "merges": _fill(
            v1 + "base: &b {id: t, prompt: p}\nstages: [{id: s, tasks: [",
            "{<<: *b}",
            "]}]\n",
            count=MAX_TASKS,
            sep=",",
        ),
        "billion_laughs": v1
        + "a: &a [x,x,x,x,x,x,x,x,x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n"
            for i in range(8)
        ),
        "big_ints": _fill(v1 + "x: [", "9" * 4300, "1]\n", sep=","),
        "huge_ints": _fill(v1 + "x: [", "9" * 5000, "1]\n", sep=","),
        "comments": _fill(v1 + "stages: [{id: s, tasks: [" + task + "]}]\n", "#" * 99 + "\n", ""),
        # v2
        "v2_wide_needs": _numbered(
            "version: v2\nstages: [{id: a, mode: parallel, tasks: ["
            + ",".join(f"{{id: w{i}, prompt: p, read_only: true}}" for i in range(1100))
            + "]}, {id: b, tasks: [",
            "{{id: c{i}, prompt: p}}",
            "]}]\n",
            MAX_TASKS - 1100,
            ",",
        ),
        "v2_many_needs": _numbered(
            "version: v2\nstages: [{id: s, mode: parallel, tasks: [",
            "{{id: t{i}, prompt: p, read_only: true, needs: [t0, s/*]}}",
            "]}]\n",
            MAX_TASKS,
            ",",
        ),
        "v2_chain": _numbered(
            "version: v2\nstages: [{id: s, tasks: [",
            "{{id: t{i}, prompt: 'p ${{{{ tasks.t0.result }}}}', when: '${{{{ success() }}}}'}}",
            "]}]\n",
            MAX_TASKS,
            ",",
        ),
        "v2_output_schemas": _numbered(
            "version: v2\nstages: [{id: s, tasks: [",
            "{{id: t{i}, prompt: p, output_schema: {{type: object, required: [k{i}], "
            "properties: {{k{i}: {{type: string, pattern: '^a+$'}}}}}}}}",
            "]}]\n",
            32,
            ",",
        ),
        "v2_big_output_schema": "version: v2\nstages: [{id: s, tasks: [{id: t, prompt: p, "
        "output_schema: {type: object, properties: {"
        + ", ".join(f"p{i}: {{type: string, minLength: 1}}" for i in range(380))
        + "}}}]}]\n",
        "v2_env": _numbered(
            "version: v2\nstages: [{id: s, tasks: [{id: t, prompt: p, env: {",
            "E{i}: '${{{{ env.E{i} }}}}'",
            "}}]}]\n",
            1000,
            ", ",
        ),
        "v2_broken": _fill(
            "version: v2\nstages: [{id: s, tasks: [",
            "{id: t, prompt: p, timeout: x, retries: y, check: [], env: 1, needs: [?], when: 3}",
            "]}]\n",
            count=MAX_TASKS,
            sep=",",
        ),
    }
    for name, text in shapes.items():
        assert len(text.encode()) <= MAX_PLAN_BYTES, name
    return shapes


_PROBE = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from claude_runner.errors import PlanError
from claude_runner.plan.loader import load_plan
from claude_runner.plan.models import resolve

start = time.perf_counter()
try:
    resolve(load_plan(Path(sys.argv[1])))
    outcome = "accepted"
except PlanError as err:
    outcome = f"refused ({len(err.problems)} problems)"
elapsed = time.perf_counter() - start
# VmHWM: this process image's peak; ru_maxrss would carry the parent's across exec
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
peak_mb = int(hwm) / 1024
print(json.dumps({"outcome": outcome, "seconds": elapsed, "peak_mb": peak_mb}))
"""


def probe(path: Path) -> dict[str, object]:
    """Load ``path`` in a fresh interpreter: outcome, seconds, peak RSS in MB."""
    done = proc.run([sys.executable, "-c", _PROBE, str(path), str(ROOT / "src")], timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"the probe failed: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def worst(directory: Path) -> tuple[float, str, float, str]:
    slowest, slowest_name, biggest, biggest_name = 0.0, "", 0.0, ""
    for name, text in worst_shapes().items():
        path = directory / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        result = probe(path)
        seconds, peak = float(result["seconds"]), float(result["peak_mb"])  # type: ignore[arg-type]
        print(
            f"  {name:<18} {len(text.encode()):>8} B  {seconds:6.3f} s  {peak:6.1f} MB  "
            f"{result['outcome']}",
            file=sys.stderr,
        )
        if seconds > slowest:
            slowest, slowest_name = seconds, name
        if peak > biggest:
            biggest, biggest_name = peak, name
    return slowest, slowest_name, biggest, biggest_name


def _time(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def ratio(directory: Path, text: str) -> float:
    path = directory / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    plan = load_plan(path)  # warm-up, and proof the plan is valid
    count = len(resolve(plan).tasks)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def runner() -> object:
        return resolve(load_plan(path))

    def safe_load() -> object:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506

    safe_load()
    runs: dict[str, list[float]] = {"runner": [], "safe_load": []}
    for _ in range(ROUNDS):
        runs["runner"].append(_time(runner))
        runs["safe_load"].append(_time(safe_load))
    med = {name: statistics.median(times) for name, times in runs.items()}
    print(
        f"plan {plan.version}: {count} tasks, {path.stat().st_size} bytes; both sides: "
        f"{loader.__name__}'s parser; the runner also resolves (cascade, graph)",
        file=sys.stderr,
    )
    for name, times in runs.items():
        print(
            f"  {name:<9} median {med[name]:.3f} s  runs {[round(t, 3) for t in times]}",
            file=sys.stderr,
        )
    return med["runner"] / med["safe_load"]


def _machine_speed() -> float:
    """CPU seconds of a fixed pure-Python loop: how fast this machine is right now (the
    shared CPUs here run it 3 to 10 times slower when busy; read the seconds with it)."""
    start = time.process_time()
    out, path = [], ("x",)
    for i in range(1_000_000):
        out.append(((*path, i), (1, i), 0))
    return time.process_time() - start


def main() -> int:
    print(f"machine: a reference loop took {_machine_speed():.2f} s of CPU", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="plan-load-") as tmp:
        first = ratio(Path(tmp), plan_text())
        v2 = ratio(Path(tmp), plan_v2_text())
        print("worst shapes (fresh interpreter each):", file=sys.stderr)
        slowest, slowest_name, biggest, biggest_name = worst(Path(tmp))
    print(f"plan_load: runner/safe_load={first:.2f}")
    print(f"plan_load_v2: runner/safe_load={v2:.2f}")
    print(
        f"plan_load_worst: max_s={slowest:.2f} max_mb={biggest:.0f} "
        f"(shape={slowest_name}, {biggest_name})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
