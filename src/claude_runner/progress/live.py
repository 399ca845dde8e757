"""The live table on a terminal: stages, tasks, status, elapsed time, attempts, turns,
cost so far, the tool the agent is using; totals and the budget left.

Hand-written ANSI rather than rich, by measurement: the same 38 rows as a rich ``Table``
printed to a reused ``Console`` took ~60 ms a frame, this renderer's ``Frame`` ~0.4 ms
(both on this machine, loaded alike; see ``bench/progress.py``); at four frames a second
rich alone would take a quarter of a core from the executor's loop.

How it draws: ``event``/``activity`` only update the state under a lock and wake a
daemon thread, which draws at most one frame per ``INTERVAL`` seconds however many
changes came (and one per ``TICK`` seconds for the elapsed times of running tasks), and
writes only a frame that differs from the last, as one write: cursor up over the
previous frame, each line cleared to its end, the rest of the screen cleared. Every line
is cut to the terminal's width, and the frame to its height (running and failed tasks
first, the rest summed up in one line), so a frame never wraps or scrolls, and the
cursor-up lands on its first line. After a width change the old frame's lines are
counted as the terminal re-wrapped them (tmux, VTE, iTerm2 and kitty re-wrap), so the
new frame starts where the old one did. Colours unless ``NO_COLOR`` is set or
``TERM=dumb``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from claude_runner.progress.state import RunState, StageState, TaskState

INTERVAL = 0.25
TICK = 1.0
_MARK = {
    "succeeded": "✓",
    "failed": "✗",
    "cancelled": "⊘",
    "skipped": "-",
    "running": "▶",
    "retrying": "↻",
    "checking": "?",
    "pending": "·",
}
_COLOUR = {
    "succeeded": "32",
    "failed": "31",
    "cancelled": "33",
    "skipped": "2",
    "running": "36",
    "retrying": "35",
    "pending": "2",
}


def _elapsed(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _money(usd: float | None) -> str:
    return "" if usd is None else f"${usd:.4f}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class Frame:
    """Builds the lines of one frame from a RunState (pure: no I/O)."""

    def __init__(self, state: RunState, *, now: float, width: int, height: int, colour: bool):
        self.state = state
        self.now = now
        self.width = max(20, width - 1)  # never the last column: some terminals wrap there
        self.height = max(4, height - 1)
        self.colour = colour

    def paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def header(self) -> str:
        s = self.state
        counts = s.counts()
        done = sum(counts.get(k, 0) for k in ("succeeded", "failed", "cancelled", "skipped"))
        end = s.ended if s.ended is not None else self.now
        elapsed = _elapsed(end - s.started) if s.started is not None else ""
        parts = [
            f"run {s.plan_run_id}",
            f"{s.status} {elapsed}",
            f"tasks {done}/{s.task_count or len(s.tasks())}",
        ]
        for status in ("succeeded", "failed", "running"):
            if counts.get(status):
                parts.append(f"{_MARK[status]}{counts[status]}")
        spent = s.spent()
        parts.append(f"cost ${spent:.4f}")
        if s.budget_usd is not None:
            parts.append(f"budget left ${max(0.0, s.budget_usd - spent):.2f}")
        return "  ".join(parts)

    def task_line(self, t: TaskState, name_width: int) -> str:
        end = t.ended if t.ended is not None else self.now
        elapsed = _elapsed(end - t.started) if t.started is not None else ""
        status = t.status + (f" ({t.failure_kind})" if t.failure_kind else "")
        detail = t.tool or t.note if t.active else (t.note if t.failure_kind else "")
        cells = (
            f"  {_cut(t.task_id, name_width - 2):<{name_width - 2}} "
            f"{_MARK.get(t.status, ' ')} {_cut(status, 24):<24} {elapsed:>8} "
            f"{t.attempt or '':>3} {'' if t.turns is None else t.turns:>5} "
            f"{_money(t.cost_usd):>9}  "
        )
        line = _cut(cells + (detail or ""), self.width)
        return self.paint(_COLOUR.get(t.status, ""), line) if t.status != "running" else line

    def stage_line(self, stage: StageState, name_width: int) -> str:
        tasks = list(stage.tasks.values())
        done = sum(1 for t in tasks if not t.active and t.status != "pending")
        end = stage.ended if stage.ended is not None else self.now
        elapsed = _elapsed(end - stage.started) if stage.started is not None else ""
        cost = sum(t.cost_usd or 0.0 for t in tasks)
        count = f"{done}/{stage.task_count or len(tasks)}"
        text = (
            f"{_cut(stage.id, name_width):<{name_width}}   {_cut(stage.status, 24):<24} "
            f"{elapsed:>8} {count:>9} {_money(cost):>9}"
        )
        return self.paint("1", _cut(text, self.width))

    def lines(self) -> list[str]:
        stages = list(self.state.stages.values())
        names = [len(s.id) for s in stages] + [len(t.task_id) + 2 for t in self.state.tasks()]
        name_width = min(max([16, *names]), max(16, self.width // 3))
        head = (
            f"{'STAGE / TASK':<{name_width}}   {'STATUS':<24} {'ELAPSED':>8} "
            f"{'ATT':>3} {'TURNS':>5} {'COST':>9}  TOOL"
        )
        out = [self.paint("1", _cut(self.header(), self.width)), _cut(head, self.width)]
        budget = self.height - len(out)
        # Each started stage gets its line; its tasks by priority within what is left.
        shown_stages = [s for s in stages if s.status != "pending" or s.tasks]
        budget -= len(shown_stages)
        rank = {"running": 0, "retrying": 0, "checking": 0, "failed": 1, "cancelled": 2}
        candidates = sorted(
            (t for s in shown_stages for t in s.tasks.values()),
            key=lambda t: (rank.get(t.status, 3), -(t.ended or 0.0)),
        )
        hidden = len(candidates) - budget if len(candidates) > budget else 0
        chosen = {id(t) for t in candidates[: max(0, budget - (1 if hidden else 0))]}
        if hidden:
            hidden = len(candidates) - len(chosen)
        for s in shown_stages:
            out.append(self.stage_line(s, name_width))
            out.extend(self.task_line(t, name_width) for t in s.tasks.values() if id(t) in chosen)
        if hidden:
            summary: dict[str, int] = {}
            for t in candidates:
                if id(t) not in chosen:
                    summary[t.status] = summary.get(t.status, 0) + 1
            text = ", ".join(f"{n} {k}" for k, n in summary.items())
            out.append(self.paint("2", _cut(f"  … {hidden} more tasks: {text}", self.width)))
        return out[: self.height]


class LiveView:
    """The observer that draws the table on ``stream`` (a terminal)."""

    def __init__(
        self,
        stream: TextIO,
        env: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
        size: Callable[[], os.terminal_size] | None = None,
    ) -> None:
        self.stream = stream
        self.colour = not env.get("NO_COLOR") and env.get("TERM", "") != "dumb"
        self.clock = clock
        self.size = size or self._terminal_size
        self.state = RunState()
        self.lock = threading.Lock()  # the state
        self.write_lock = threading.Lock()  # the screen: one writer at a time
        self.wake = threading.Event()  # something changed
        self.stop = threading.Event()
        self.stopped = False
        self.drawn: list[str] = []  # the previous frame's lines, as printed
        self.drawn_width = 0
        self.drawn_revision = -1
        self.drawn_at = 0.0
        self.thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self.thread.start()

    def _terminal_size(self) -> os.terminal_size:
        try:
            return os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            return shutil.get_terminal_size()

    # -- the observer API ---------------------------------------------------------------

    def event(self, body: dict[str, Any]) -> None:
        with self.lock:
            changed = self.state.event(body)
        if changed is not None:
            self.wake.set()

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
        self.wake.set()

    def write_above(self, text: str) -> None:
        """Print ``text`` (the runner's own messages) above the table: the table is
        cleared, the text written, the table drawn again below it."""
        if self.stopped:
            self.stream.write(text)
            self.stream.flush()
            return
        with self.write_lock:
            up = self._rows(self.size().columns)
            clear = "\r" + (f"\x1b[{up}A" if up else "") + "\x1b[J"
            self.stream.write(clear + text + ("" if text.endswith("\n") else "\n"))
            self.drawn, self.drawn_revision = [], -1
        self.draw(force=True)

    def log_stream(self) -> _AboveStream:
        """A file-like stream for a ``logging.StreamHandler`` (or anything printing to
        stderr during the run): each line lands above the table."""
        return _AboveStream(self)

    def close(self) -> None:
        """Draw the final frame and stop; the table stays on the screen."""
        if self.stopped:
            return
        self.stopped = True
        self.stop.set()
        self.wake.set()
        self.thread.join(timeout=5)
        self.draw(force=True)

    # -- drawing ------------------------------------------------------------------------

    def _loop(self) -> None:
        # Woken by a change (or every TICK, for the elapsed times), then at most one
        # frame per INTERVAL however many events came: a 64-task start is one frame.
        while True:
            self.wake.wait(TICK)
            if self.stopped:
                return
            self.wake.clear()
            self.draw()
            if self.stop.wait(INTERVAL):
                return

    def draw(self, *, force: bool = False) -> None:
        now = self.clock()
        with self.lock:
            fresh = self.state.revision != self.drawn_revision
            running = any(t.active for t in self.state.tasks())
            if not (force or fresh or (running and now - self.drawn_at >= TICK)):
                return
            if self.state.started is None and not force:
                return
            size = self.size()
            lines = Frame(
                self.state, now=now, width=size.columns, height=size.lines, colour=self.colour
            ).lines()
            self.drawn_revision = self.state.revision
        self.drawn_at = now
        with self.write_lock:
            if lines == self.drawn and size.columns == self.drawn_width:
                return  # nothing new on the screen: no write
            self._write(lines, size.columns)

    def _rows(self, width: int) -> int:
        """Rows the previous frame takes now (re-wrapped if the width shrank)."""
        if width >= self.drawn_width:
            return len(self.drawn)
        return sum(max(1, -(-_visible(line) // max(1, width))) for line in self.drawn)

    def _write(self, lines: list[str], width: int) -> None:
        up = self._rows(width)
        parts = ["\r"]
        if up:
            parts.append(f"\x1b[{up}A")
        parts.extend(line + "\x1b[K\n" for line in lines)
        parts.append("\x1b[J")
        try:
            self.stream.write("".join(parts))
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing, run on
            self.stopped = True
            return
        self.drawn = lines
        self.drawn_width = width


class _AboveStream:
    """Lines written to it go above the live table (``LiveView.log_stream``)."""

    def __init__(self, view: LiveView) -> None:
        self.view = view
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        if "\n" in self.pending:
            done, _, self.pending = self.pending.rpartition("\n")
            self.view.write_above(done + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            text, self.pending = self.pending, ""
            self.view.write_above(text + "\n")


def _visible(line: str) -> int:
    """Printed width of a line (colour codes do not count)."""
    if "\x1b" not in line:
        return len(line)
    length, i = 0, 0
    while i < len(line):
        if line[i] == "\x1b":
            end = line.find("m", i)
            i = end + 1 if end >= 0 else len(line)
            continue
        length += 1
        i += 1
    return length
