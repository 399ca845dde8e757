"""Feeds a recorded run into a progress view, for the terminal tests (run under tmux).

    python -m tests.progress_driver SCRIPT MODE

SCRIPT is a JSON-lines file of steps: ``{"event": {...}}`` (given to ``event`` with
its ``ts`` moved to the present, spacing kept, so elapsed times are live and plausible),
``{"activity": [stage, task, tool, turns, cost]}``, or ``{"pause": "label"}``: the
driver prints nothing and waits for a line on stdin (the test's ``send-keys Enter``), so
the test decides when the run moves on and never has to guess timings. It starts with
five lines of its own (``driver: line N``; not with ``--no-preamble``) and after the
last step closes the view and prints ``driver: done``.
"""

from __future__ import annotations

import json
import os
import sys
import termios
import time
from datetime import UTC, datetime
from pathlib import Path

from claude_runner.progress import make_progress


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def main(argv: list[str]) -> int:
    script, mode = Path(argv[0]), argv[1]
    if sys.stdin.isatty():  # the test's Enter must not echo a newline into the table
        attrs = termios.tcgetattr(sys.stdin)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(sys.stdin, termios.TCSANOW, attrs)
    # Lines above the table, as a real run has (the runner's notices): a frame that
    # miscounted its rows after a resize would overwrite them or leave parts behind.
    if "--no-preamble" not in argv:
        sys.stderr.write("".join(f"driver: line {n}\n" for n in range(1, 6)))
    view = make_progress(mode, sys.stderr, os.environ)
    assert view is not None
    steps = [json.loads(line) for line in script.read_text().splitlines()]
    # Recorded times keep their spacing, shifted so that the first pause is "now"; a time
    # still ahead of the clock is the clock (a replay runs faster than the recording).
    recorded = [_epoch(s["event"]["ts"]) for s in steps if "event" in s]
    first_pause = next((n for n, s in enumerate(steps) if "pause" in s), len(steps))
    before = [_epoch(s["event"]["ts"]) for s in steps[:first_pause] if "event" in s]
    offset = time.time() - max(before or recorded or [time.time()])
    for step in steps:
        if "pause" in step:
            sys.stdin.readline()
        elif "event" in step:
            body = step["event"]
            at = min(_epoch(body["ts"]) + offset, time.time())
            body["ts"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
            view.event(body)
        else:
            view.activity(*step["activity"])
    view.close()
    sys.stdout.write("driver: done\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
