"""Hostile plans fail fast, in bounded memory, with one clear message.

Each case runs the loader in a fresh interpreter that measures the time of ``load_plan``
alone, then its peak Python memory (tracemalloc) in a second run. The bounds are safety
limits far above what a correct loader needs (a few MB, about a second at most); an
unbounded one would blow through them by orders of magnitude (a billion laughs expands
to 10^9 nodes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from claude_runner import proc
from claude_runner.plan.loader import MAX_PLAN_BYTES
from claude_runner.plan.yamlsrc import MAX_ALIAS_NODES, MAX_DEPTH

PEAK_BYTES_BOUND = 50 * 1024 * 1024
SECONDS_BOUND = 5.0

_PROBE = """
import json, sys, time, tracemalloc
from pathlib import Path
from claude_runner.errors import PlanError
from claude_runner.plan.loader import load_plan

def attempt():
    try:
        load_plan(Path(sys.argv[1]))
    except PlanError as err:
        return [p.message for p in err.problems]
    return []

start = time.perf_counter()
problems = attempt()
elapsed = time.perf_counter() - start
# Memory in a second run: tracing slows Python down several times.
tracemalloc.start()
assert attempt() == problems
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"problems": problems, "seconds": elapsed, "peak": peak}))
"""


def _probe(path: Path) -> tuple[list[str], float, int]:
    done = proc.run([sys.executable, "-c", _PROBE, str(path)], timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    return result["problems"], result["seconds"], result["peak"]


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
    problems, seconds, peak = _probe(path)
    assert problems == [
        f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes (a 'billion laughs' "
        "document?); write the plan out without nested aliases"
    ]
    assert peak < PEAK_BYTES_BOUND
    assert seconds < SECONDS_BOUND


def test_many_flat_aliases_are_bounded_too(tmp_path: Path) -> None:
    path = tmp_path / "flat.yaml"
    refs = ", ".join(["*t"] * (MAX_ALIAS_NODES // 10 + 1))
    path.write_text(f"version: v1\nx: &t [a, b, c, d, e, f, g, h, i]\nstages: [{refs}]\n")
    assert path.stat().st_size < MAX_PLAN_BYTES
    problems, seconds, peak = _probe(path)
    assert problems[0].startswith("YAML aliases expand to more than")
    assert peak < PEAK_BYTES_BOUND
    assert seconds < SECONDS_BOUND


@pytest.mark.parametrize("size", [MAX_PLAN_BYTES + 1, 64 * MAX_PLAN_BYTES])
def test_oversized_file_is_refused_before_parsing(tmp_path: Path, size: int) -> None:
    path = tmp_path / "big.yaml"
    head = b"version: v1\nstages: []\n# "
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(size)  # sparse: the rest reads as NUL bytes
    problems, seconds, peak = _probe(path)
    assert problems == [
        f"the plan file is larger than 1024 KiB, the limit ({MAX_PLAN_BYTES} bytes); a plan "
        "is a short list of stages and tasks: move long prompts into prompt_file"
    ]
    assert peak < PEAK_BYTES_BOUND  # reads at most the limit + 1 byte
    assert seconds < SECONDS_BOUND


def test_a_file_at_the_limit_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "at-limit.yaml"
    body = "version: v1\nstages: [{id: s, tasks: [{id: t, prompt: hi}]}]\n# "
    path.write_text(body + "x" * (MAX_PLAN_BYTES - len(body) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_PLAN_BYTES
    problems, seconds, peak = _probe(path)
    assert problems == []
    assert peak < PEAK_BYTES_BOUND
    assert seconds < SECONDS_BOUND


@pytest.mark.parametrize("opener", ["[", "- "])
def test_deep_nesting_fails_fast(tmp_path: Path, opener: str) -> None:
    path = tmp_path / "deep.yaml"
    depth = 200_000 if opener == "[" else 500
    if opener == "[":
        text = "version: v1\nstages: " + "[" * depth + "]" * depth + "\n"
    else:
        text = "version: v1\nstages:\n" + "".join("  " * i + "- \n" for i in range(depth))
    path.write_text(text, encoding="utf-8")
    problems, seconds, peak = _probe(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"the YAML nests deeper than {MAX_DEPTH} levels")
    assert peak < PEAK_BYTES_BOUND
    assert seconds < SECONDS_BOUND
