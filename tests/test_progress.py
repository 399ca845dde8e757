"""Live progress: the plain lines for CI logs, the live table in a real terminal (tmux,
with a resize and without colours), the choice between them, the agent-stream activity
helper, and observers that fail."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_runner.errors import UsageError
from claude_runner.progress import Observers, StreamActivity, make_observers, make_progress
from claude_runner.progress.live import Frame, LiveView
from claude_runner.progress.plain import PlainView
from claude_runner.progress.state import RunState
from tests import rundirs
from tests.rundirs import sample_run
from tests.test_interactive import SESSION, Tmux

REPO = Path(__file__).resolve().parents[1]
Events = list[dict[str, Any]]


def recorded(tmp_path: Path) -> Events:
    """The events of the sample v2 run (a retry, checks, a failure, a skip)."""
    run = sample_run(tmp_path / "runs")
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    return [e for e in events if e["type"] != "pipeline_result"]


# --- plain lines ----------------------------------------------------------------------------


def test_plain_view_writes_one_line_per_task_start_retry_check_finish(tmp_path: Path) -> None:
    out = io.StringIO()
    view = PlainView(out)
    for e in recorded(tmp_path):
        view.event(e)
        if e["type"].endswith("task_start") and e["task_id"] == "code":
            view.activity("build", "code", "Bash", 3, 0.004)
    view.close()
    assert out.getvalue().splitlines() == [
        "[    0.0s] start   analyze/inspect (attempt 1, model sonnet)",
        "[    2.0s] finish  analyze/inspect succeeded 2.0s, $0.0200",
        "[    2.0s] start   build/code (attempt 1, model sonnet)",
        "[    2.0s] start   build/docs (attempt 1, model sonnet)",
        "[    3.0s] retry   build/code attempt 2 in 1s: rate_limited: API Error: 429 rate limited",
        "[    4.0s] start   build/code (attempt 2, model sonnet)",
        "[    6.0s] finish  build/docs failed (agent_error) 4.0s, $0.0030: "
        "the CLI reported an error: <b>bad</b> | pipe",
        "[    7.5s] check   build/code run 1 failed (exit 1, 0.5s)",
        "[    8.0s] check   build/code run 2 passed (exit 0, 0.5s)",
        "[    8.0s] finish  build/code succeeded 6.0s, 2 attempts, 3 turns, $0.0510",
        "[    8.0s] finish  ship/release skipped (upstream_failed): upstream failed",
        "[    8.0s] run failed in 8.0s: 2 succeeded, 1 failed, 1 skipped; $0.0740",
    ]


def test_plain_view_masks_what_it_prints() -> None:
    out = io.StringIO()
    view = make_progress("plain", out, {"ANTHROPIC_API_KEY": "sk-live-secret-0123456789"})
    assert view is not None
    finish = {"type": "pipeline_event.task_finish", "stage_id": "s", "task_id": "t",
              "status": "failed", "reason": "echoed sk-live-secret-0123456789 back"}  # fmt: skip
    view.event(finish)
    assert out.getvalue().endswith("finish  s/t failed: echoed *** back\n")


def test_make_observers_adds_opentelemetry_only_when_configured() -> None:
    assert not make_observers("off", io.StringIO(), {})
    both = make_observers(
        "plain", io.StringIO(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    )
    assert [type(o).__name__ for o in both.observers] == ["PlainView", "OtelObserver"]
    for o in both.observers:
        if type(o).__name__ == "OtelObserver":
            o.provider.shutdown()  # type: ignore[attr-defined]


def test_plain_view_ignores_agent_output_and_unknown_events() -> None:
    out = io.StringIO()
    view = PlainView(out)
    view.event({"type": "pipeline_event.task_output", "stage_id": "s", "task_id": "t"})
    view.event({"type": "pipeline_event.something_new", "stage_id": "s"})
    view.event({"type": "pipeline_result"})
    assert out.getvalue() == ""


# --- the frame ----------------------------------------------------------------------------


def _big_state(running: int = 8, done: int = 56) -> RunState:
    state = RunState()
    state.event({"type": "pipeline_event.plan_start", "plan_run_id": "r", "ts": rundirs.ts(0),
                 "task_count": running + done, "budget_usd": 10.0})  # fmt: skip
    state.event({"type": "pipeline_event.stage_start", "stage_id": "wide", "mode": "parallel",
                 "task_count": running + done, "ts": rundirs.ts(0)})  # fmt: skip
    for n in range(running + done):
        start = {"stage_id": "wide", "task_id": f"task-{n:02d}", "ts": rundirs.ts(n)}
        state.event({"type": "pipeline_event.task_start", **start, "attempt": 1})
        state.activity("wide", f"task-{n:02d}", "Bash", 2, 0.01)
        if n < done:
            state.event({"type": "pipeline_event.task_finish", **start, "status": "succeeded"})
    return state


def test_a_frame_fits_the_terminal_and_keeps_running_tasks_in_view() -> None:
    state = _big_state()
    lines = Frame(state, now=state.started or 0.0, width=80, height=20, colour=False).lines()
    assert len(lines) == 19
    assert all(len(line) <= 79 for line in lines)
    running = [line for line in lines if "▶ running" in line]
    assert len(running) == 8
    assert lines[-1].startswith("  … ")
    assert "succeeded" in lines[-1]
    assert "budget left $9.36" in lines[0]
    # Coloured: the same text, with SGR codes around lines.
    coloured = Frame(state, now=state.started or 0.0, width=80, height=20, colour=True).lines()
    assert any("\x1b[32m" in line for line in coloured)


def test_a_live_view_redraws_in_place_and_cuts_to_a_narrower_terminal() -> None:
    out = io.StringIO()
    sizes = [os.terminal_size((100, 30))]
    view = LiveView(out, {}, clock=lambda: 0.0, size=lambda: sizes[-1])
    try:
        for e in _sample_events():
            view.event(e)
        view.draw(force=True)
        first = out.getvalue()
        sizes.append(os.terminal_size((40, 30)))
        view.draw(force=True)
    finally:
        view.close()
    second = out.getvalue()[len(first) :]
    frame_rows = first.count("\n")
    # The previous frame's lines (up to 99 columns) re-wrap at 40: more rows to go up.
    up = int(re.match(r"\r\x1b\[(\d+)A", second).group(1))  # type: ignore[union-attr]
    assert up > frame_rows
    assert all(len(_plain(line)) <= 39 for line in second.split("\n")[:-1])


def test_messages_written_during_the_run_go_above_the_table() -> None:
    out = io.StringIO()
    view = LiveView(out, {}, clock=lambda: 0.0, size=lambda: os.terminal_size((80, 30)))
    try:
        for e in _sample_events():
            view.event(e)
        view.draw(force=True)
        rows = out.getvalue().count("\n")
        stream = view.log_stream()
        stream.write("claude-runner: warning: something to say\n")
        after = out.getvalue()[out.getvalue().index("\x1b[J") + 3 :]
    finally:
        view.close()
    # Up over the whole table, cleared, the message, then the table again below it.
    assert after.startswith(f"\r\x1b[{rows}A\x1b[Jclaude-runner: warning: something to say\n\r")
    assert after.count("STAGE / TASK") == 1


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r", "")


def _sample_events() -> Events:
    e: Events = [
        {"type": "pipeline_event.plan_start", "plan_run_id": "r1", "ts": rundirs.ts(0),
         "task_count": 2},
        {"type": "pipeline_event.stage_start", "stage_id": "s", "mode": "parallel",
         "task_count": 2, "ts": rundirs.ts(0)},
    ]  # fmt: skip
    for tid in ("a-task-with-a-rather-long-name", "b"):
        e.append({"type": "pipeline_event.task_start", "stage_id": "s", "task_id": tid,
                  "attempt": 1, "ts": rundirs.ts(0)})  # fmt: skip
    return e


# --- choosing a view ----------------------------------------------------------------------


def test_auto_is_live_on_a_terminal_and_plain_elsewhere() -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            live = make_progress("auto", tty, {"TERM": "xterm-256color"})
            dumb = make_progress("auto", tty, {"TERM": "dumb"})
            assert isinstance(live, LiveView)
            assert isinstance(dumb, PlainView)
            live.close()
    finally:
        os.close(master)
        os.close(slave)
    assert isinstance(make_progress("auto", io.StringIO(), {}), PlainView)
    assert make_progress("off", io.StringIO(), {}) is None
    with pytest.raises(UsageError, match="--progress 'fancy' is not supported"):
        make_progress("fancy", io.StringIO(), {})


def test_an_observer_that_fails_is_dropped_and_the_others_go_on() -> None:
    class Broken:
        def event(self, body: dict[str, Any]) -> None:
            raise RuntimeError("boom")

        def activity(self, *args: object) -> None:
            raise RuntimeError("boom")

        def close(self) -> None:
            raise RuntimeError("boom")

    out = io.StringIO()
    both = Observers([Broken(), PlainView(out), None])
    for e in _sample_events():
        both.event(e)
    both.close()
    assert len(both.observers) == 1
    assert out.getvalue().count("start   s/") == 2


def block_of(log: str, lines: int) -> bytes:
    return "".join(log.splitlines(keepends=True)[:lines]).encode()


def test_stream_activity_follows_tools_turns_and_cost() -> None:
    tracker = StreamActivity()
    log = rundirs.transcript("s", tools=2, cost=0.25)
    lines = log.splitlines(keepends=True)
    seen = [tracker.feed(line.encode()) for line in lines[:-1]]
    assert [s for s in seen if s is not None] == [
        ("Bash", 1, None),  # turn 1 calls a tool
        (None, 1, None),  # its result came back
        ("Bash", 2, None),
        (None, 2, None),
    ]
    # The closing text's turn and the cost come with the result message.
    assert tracker.result(json.loads(lines[-1])) == (None, 3, 0.25)
    # The same stream in one block: the state at its end, in one call (the closing
    # text's id is in a block with tool traffic: counted).
    assert StreamActivity().feed("".join(lines[:-1]).encode()) == (None, 3, None)
    # Text that quotes a key is not a tool call's end.
    quoted = rundirs.assistant_text("s", 'the key "tool_result" is', n=9).encode()
    assert StreamActivity().feed(block_of(log, 4) + quoted) == ("Bash", 3, None)
    # A block that ends inside a tool call.
    assert StreamActivity().feed(block_of(log, 4)) == ("Bash", 2, None)
    # Bulk text changes nothing.
    assert StreamActivity().feed(rundirs.assistant_text("s", "x" * 10000).encode()) is None


# --- in a real terminal ---------------------------------------------------------------------


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        reason = "tmux not found: run scripts/setup-dev.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(REPO / "src")}
    env.pop("NO_COLOR", None)
    server = Tmux(tmp_path, env)
    try:
        yield server
    finally:
        server.kill()


def _script(tmp_path: Path) -> Path:
    """The sample run's events, each task's agent busy with a tool, and a pause after
    every task start (the test presses Enter to go on)."""
    steps: list[dict[str, Any]] = []
    for e in recorded(tmp_path):
        steps.append({"event": e})
        if e["type"].endswith("task_start"):
            steps.append({"activity": [e["stage_id"], e["task_id"], "Bash", 2, 0.0123]})
            steps.append({"pause": e["task_id"]})
    path = tmp_path / "script.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in steps))
    return path


def _visible(tmux: Tmux, *flags: str) -> str:
    """What is on the screen now, row by row (no scrollback, wrapped rows not joined)."""
    return tmux.cmd("capture-pane", "-p", *flags, "-t", SESSION)


def _wait(tmux: Tmux, what: str, predicate: Callable[[str], bool]) -> str:
    """Poll the visible screen until ``predicate`` holds (bounded)."""
    deadline = time.monotonic() + 60
    while True:
        screen = _visible(tmux)
        if predicate(screen):
            return screen
        if time.monotonic() >= deadline:
            pytest.fail(f"no {what} on screen within 60s; screen:\n{screen}")
        time.sleep(0.05)


def _start(tmux: Tmux, tmp_path: Path, mode: str, *env: str) -> None:
    argv = ["env", *env, sys.executable, "-m", "tests.progress_driver", str(_script(tmp_path))]
    tmux.start([*argv, mode], cwd=REPO)


def _enter(tmux: Tmux) -> None:
    tmux.cmd("send-keys", "-t", SESSION, "Enter")


def test_live_table_in_a_terminal_with_a_resize(tmux: Tmux, tmp_path: Path) -> None:
    _start(tmux, tmp_path, "auto")
    _wait(tmux, "the first task running", lambda s: "▶ running" in s and "Bash" in s)
    _enter(tmux)  # build/code starts
    _enter(tmux)  # build/docs starts
    screen = _wait(tmux, "two tasks running", lambda s: s.count("▶ running") == 2)
    assert "✓ succeeded" in screen  # analyze/inspect
    assert "budget left $4.9" in screen
    coloured = _visible(tmux, "-e")
    assert "\x1b[32m" in coloured  # the succeeded line is green
    # Narrower and shorter: the next frame is cut to the new width, drawn once.
    tmux.cmd("resize-window", "-t", SESSION, "-x", "60", "-y", "20")
    # The new frame's header is cut to the width (ends with …); the old one re-wrapped.
    _wait(tmux, "a 60-column frame", lambda s: re.search(r"^run \S+ .*…$", s, re.M) is not None)
    screen = _visible(tmux)
    assert all(len(line) <= 60 for line in screen.splitlines())
    assert screen.count("STAGE / TASK") == 1
    assert screen.count("run 20261130T120000.000Z-abc123") == 1
    _enter(tmux)  # build/code attempt 1 fails, attempt 2 starts
    _wait(tmux, "the retry", lambda s: re.search(r"code +▶ running +\S+ +2 ", s) is not None)
    _enter(tmux)  # the rest of the run
    screen = _wait(tmux, "the end", lambda s: "driver: done" in s)
    assert screen.count("STAGE / TASK") == 1
    assert re.search(r"docs +✗ failed \(agent_error\)", screen)
    assert re.search(r"release +- skipped", screen)
    assert "run 20261130T120000.000Z-abc123  failed" in screen


def test_live_table_without_colours(tmux: Tmux, tmp_path: Path) -> None:
    _start(tmux, tmp_path, "live", "NO_COLOR=1")
    _wait(tmux, "the table", lambda s: "▶ running" in s)
    for _ in range(4):  # a pause after each of the four task starts
        _enter(tmux)
    _wait(tmux, "the end", lambda s: "driver: done" in s)
    coloured = _visible(tmux, "-e")
    assert "✗ failed" in coloured
    assert "\x1b[" not in coloured


def test_a_dumb_terminal_gets_plain_lines(tmux: Tmux, tmp_path: Path) -> None:
    _start(tmux, tmp_path, "auto", "TERM=dumb")
    _wait(tmux, "the first line", lambda s: "start   analyze/inspect" in s)
    for _ in range(4):  # a pause after each of the four task starts
        _enter(tmux)
    screen = _wait(tmux, "the end", lambda s: "driver: done" in s)
    assert "STAGE / TASK" not in screen
    assert "finish  build/docs failed (agent_error)" in screen
    assert "run failed in " in screen
