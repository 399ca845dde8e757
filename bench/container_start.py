"""Container start-up cost of the runner image: time from ``docker run`` to the first
pipeline event of a one-task plan, side by side with ``docker run`` of the same image
running ``true`` (entrypoint bypassed), plus the image's size.

    .venv/bin/python bench/container_start.py [--image claude-runner-test:latest] [--rounds 5]

Prints ``container_start: first_event/bare_run=X.XX`` (ratio of medians; goal <= 1.50),
the medians and the image size. ``bare_run`` times the whole ``docker run --rm ... true``
(exit and removal included), while the pipeline is timed to its first line only; so a
second baseline, ``bare_echo``, is timed to the first output line of ``echo`` in the same
image, and ``first_event/bare_echo`` is printed too. Needs a running engine and the image (built by
``task build:base`` or the image tests). The one task runs the real Claude Code CLI in
the container against the stand-in Messages API on the host (``--network host``); only
the time to the first event line (``plan_start``) counts, the rest of the run is not
timed. Rounds alternate (bare, pipeline, echo, bare, pipeline, echo, ...); containers use ``--rm``,
so nothing is deleted between rounds by the benchmark itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.fakeapi import FakeMessagesAPI, Text  # noqa: E402

from claude_runner import proc  # noqa: E402

PLAN = """\
version: v1
stages:
  - id: only
    tasks:
      - id: one
        prompt: "bench-container-start"
"""
ENV_NAMES = (
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "CLAUDE_CODE_MAX_RETRIES",
)


def bare_run(image: str) -> float:
    start = time.perf_counter()
    done = proc.run(["docker", "run", "--rm", "--entrypoint", "true", image], timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"docker run {image} true failed: {done.stderr.strip()}")
    return elapsed


def first_line(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, bytes, int]:
    """Seconds from spawning ``argv`` to its first stdout line; then the rest, untimed."""
    start = time.perf_counter()
    child = proc.spawn(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    line = child.stdout.readline()
    elapsed = time.perf_counter() - start
    child.stdout.read()
    return elapsed, line, child.wait(timeout=120)


def bare_echo(image: str) -> float:
    """Same clock as first_event (to the first output line), without the runner."""
    elapsed, line, code = first_line(
        ["docker", "run", "--rm", "--entrypoint", "echo", image, "ready"]
    )
    if line != b"ready\n" or code != 0:
        raise SystemExit(f"docker run {image} echo failed (exit {code})")
    return elapsed


def first_event(image: str, source: Path, env: dict[str, str]) -> float:
    env_flags = [flag for name in ENV_NAMES for flag in ("-e", name)]
    argv = ["docker", "run", "--rm", "--network", "host", *env_flags]
    argv += ["-v", f"{source}:/workspace-source:ro", image, "--pipeline", "plan.yml"]
    elapsed, line, code = first_line(argv, env)
    if b'"pipeline_event.plan_start"' not in line or code != 0:
        raise SystemExit(f"pipeline run failed (exit {code}): {line!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="claude-runner-test:latest")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    size = proc.run(["docker", "image", "inspect", "--format", "{{.Size}}", args.image])
    if size.returncode != 0:
        raise SystemExit(f"image {args.image} not found: build it with `task build:base`")

    api = FakeMessagesAPI().start()
    api.default(Text("ok"))
    try:
        with tempfile.TemporaryDirectory(prefix="container-start-") as tmp:
            source = Path(tmp)
            (source / "plan.yml").write_text(PLAN)
            source.chmod(0o755)
            env = {
                **os.environ,
                "ANTHROPIC_BASE_URL": api.url,
                "ANTHROPIC_API_KEY": "sk-bench-fake-key-0123456789abcdef",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "CLAUDE_CODE_MAX_RETRIES": "0",
            }
            bare_run(args.image)  # warm-up: page cache, daemon state
            first_event(args.image, source, env)
            bare: list[float] = []
            echo: list[float] = []
            piped: list[float] = []
            for _ in range(args.rounds):
                bare.append(bare_run(args.image))
                piped.append(first_event(args.image, source, env))
                echo.append(bare_echo(args.image))
    finally:
        api.stop()

    b, p, e = statistics.median(bare), statistics.median(piped), statistics.median(echo)
    print(f"image {args.image}: {int(size.stdout.strip()) / 1e6:.0f} MB")
    print(f"bare_run (docker run --entrypoint true) median {b:.3f}s: {[round(x, 3) for x in bare]}")
    print(f"first_event (pipeline plan_start) median {p:.3f}s: {[round(x, 3) for x in piped]}")
    print(f"bare_echo (to echo's first line) median {e:.3f}s: {[round(x, 3) for x in echo]}")
    print(f"container_start: first_event/bare_echo={p / e:.2f} (same clock: first output line)")
    print(f"container_start: first_event/bare_run={p / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
