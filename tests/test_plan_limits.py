"""Hostile plans fail in bounded memory, with one clear message (or a bounded list).

Each case runs the loader in a fresh interpreter that measures its peak Python memory
(tracemalloc). The bound is a safety limit far above what a correct loader needs; an
unbounded one would blow through it by orders of magnitude (a billion laughs expands to
10^9 nodes, a megabyte of list items once took 528 MB). Time is not asserted here:
``bench/plan_load.py`` measures the worst shapes (its ``plan_load_worst`` line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from claude_runner import proc
from claude_runner.plan.loader import MAX_PLAN_BYTES, MAX_PROBLEMS
from claude_runner.plan.yamlsrc import MAX_ALIAS_NODES, MAX_DEPTH, MAX_NODES

PEAK_BYTES_BOUND = 50 * 1024 * 1024

_PROBE = """
import json, sys, tracemalloc
from pathlib import Path
from claude_runner.errors import PlanError
from claude_runner.plan.loader import load_plan

def attempt():
    try:
        load_plan(Path(sys.argv[1]))
    except PlanError as err:
        return [p.message for p in err.problems]
    return []

tracemalloc.start()
problems = attempt()
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"problems": problems, "peak": peak}))
"""


_RSS_PROBE = """
import json, sys
from pathlib import Path
from claude_runner.errors import PlanError
from claude_runner.plan.loader import load_plan
try:
    load_plan(Path(sys.argv[1]))
    problems = []
except PlanError as err:
    problems = [p.message for p in err.problems]
# VmHWM: this process image's peak; ru_maxrss would carry the parent's across exec
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
peak = int(hwm) * 1024
print(json.dumps({"problems": problems, "peak": peak}))
"""


def _probe(path: Path, probe: str = _PROBE) -> tuple[list[str], int]:
    done = proc.run([sys.executable, "-c", probe, str(path)], timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    return result["problems"], result["peak"]


def _laughs(levels: int, width: int) -> str:
    lines = ["version: v1", "l0: &l0 " + json.dumps(["lol"] * width)]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    lines.append(f"stages: *l{levels}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("levels", "width"), [(9, 9), (12, 10), (40, 2)])
def test_billion_laughs_fails_fast_in_bounded_memory(
    tmp_path: Path, levels: int, width: int
) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(levels, width), encoding="utf-8")
    problems, peak = _probe(path)
    assert problems == [
        f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes (a 'billion laughs' "
        "document?); write the plan out without nested aliases"
    ]
    assert peak < PEAK_BYTES_BOUND


def test_many_flat_aliases_are_bounded_too(tmp_path: Path) -> None:
    path = tmp_path / "flat.yaml"
    refs = ", ".join(["*t"] * (MAX_ALIAS_NODES // 10 + 1))
    path.write_text(f"version: v1\nx: &t [a, b, c, d, e, f, g, h, i]\nstages: [{refs}]\n")
    assert path.stat().st_size < MAX_PLAN_BYTES
    problems, peak = _probe(path)
    assert problems[0].startswith("YAML aliases expand to more than")
    assert peak < PEAK_BYTES_BOUND


@pytest.mark.parametrize("size", [MAX_PLAN_BYTES + 1, 64 * MAX_PLAN_BYTES])
def test_oversized_file_is_refused_before_parsing(tmp_path: Path, size: int) -> None:
    path = tmp_path / "big.yaml"
    head = b"version: v1\nstages: []\n# "
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(size)  # sparse: the rest reads as NUL bytes
    problems, peak = _probe(path)
    assert problems == [
        f"the plan file is larger than 1024 KiB, the limit ({MAX_PLAN_BYTES} bytes); a plan "
        "is a short list of stages and tasks: move long prompts into prompt_file"
    ]
    assert peak < PEAK_BYTES_BOUND  # reads at most the limit + 1 byte


def test_a_file_at_the_limit_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "at-limit.yaml"
    body = "version: v1\nstages: [{id: s, tasks: [{id: t, prompt: hi}]}]\n# "
    path.write_text(body + "x" * (MAX_PLAN_BYTES - len(body) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_PLAN_BYTES
    problems, peak = _probe(path)
    assert problems == []
    assert peak < PEAK_BYTES_BOUND


@pytest.mark.parametrize("opener", ["[", "- "])
def test_deep_nesting_fails_fast(tmp_path: Path, opener: str) -> None:
    path = tmp_path / "deep.yaml"
    depth = 200_000 if opener == "[" else 500
    if opener == "[":
        text = "version: v1\nstages: " + "[" * depth + "]" * depth + "\n"
    else:
        text = "version: v1\nstages:\n" + "".join("  " * i + "- \n" for i in range(depth))
    path.write_text(text, encoding="utf-8")
    problems, peak = _probe(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"the YAML nests deeper than {MAX_DEPTH} levels")
    assert peak < PEAK_BYTES_BOUND


def _one_mib(head: str, item: str, tail: str, sep: str = ",", most: int = 10**9) -> str:
    count = min(most, (MAX_PLAN_BYTES - len(head + tail)) // len(item + sep))
    return head + sep.join([item] * count) + tail


BROKEN_TASK = '{id: "a/b", prompt: "", model: x, verbosity: y, read_only: 1}'


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "deep",
            _one_mib("version: v1\nx: [", "[" * 60 + "]" * 60, "]\n"),
            f"the YAML has more than {MAX_NODES} nodes",
        ),
        (
            "broken_tasks",
            _one_mib("version: v1\nstages: [{id: s, tasks: [", BROKEN_TASK, "]}]\n"),
            "the plan has more than 10000 tasks",
        ),
        (
            "broken_stages",
            _one_mib(
                "version: v1\nstages: [",
                f"{{id: a/b, tasks: [{BROKEN_TASK}]}}",
                "]\n",
                most=MAX_NODES // 20,
            ),
            "'a/b' is not a safe id",
        ),
    ],
)
def test_a_megabyte_of_hostile_yaml_is_refused_in_bounded_memory(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size <= MAX_PLAN_BYTES
    # The whole process's peak (interpreter and imports included), as the goal states it;
    # tracemalloc would slow these big inputs down tenfold.
    problems, peak = _probe(path, _RSS_PROBE)
    assert 1 <= len(problems) <= MAX_PROBLEMS
    assert problems[0].startswith(expected)
    assert peak < 200 * 1024 * 1024
