"""Regenerate the README's screenshots: ``docs/progress-live.png`` (the live table in a
terminal), ``docs/report-html.png`` (the HTML report) and ``docs/report-transcript.png``
(one task of it opened).

    .venv/bin/python docs/screenshots.py

Both come from a synthetic run (``tests/rundirs.py``: 3 stages, a retry, a failed check,
a failure, a skip, two models). The live table is drawn by ``tests/progress_driver.py``
in a real tmux pane, stopped mid-run; its screen (with colours, ``capture-pane -e``) is
turned into HTML here and photographed by headless Chromium, like the report.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests import rundirs  # noqa: E402
from tests.rundirs import Attempt, Check, RunBuilder, TaskSpec  # noqa: E402

from claude_runner.reports import write_reports  # noqa: E402

CHROMIUM = (
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_COLOURS = {"31": "#ff6b6b", "32": "#69db7c", "33": "#ffd43b", "35": "#da77f2", "36": "#66d9e8"}


def demo_run(root: Path) -> Path:
    """A run worth looking at."""
    b = RunBuilder(root)
    s = "sess"

    def log(n: int, result: str, cost: float, tools: int = 3, **kw: Any) -> str:
        return rundirs.transcript(f"{s}{n}", result=result, cost=cost, tools=tools, **kw)

    def ok(stage: str, tid: str, n: int, cost: float, duration: float, **kw: Any) -> TaskSpec:
        attempt = Attempt(cost=cost, duration=duration, log=log(n, f"{tid} done", cost))
        return TaskSpec(stage, tid, attempts=[attempt], **kw)

    retry = Attempt(
        status="failed",
        failure_kind="rate_limited",
        reason="API Error: 429 rate limited",
        cost=0.001,
        duration=2,
        log=rundirs.init_line("x"),
    )
    two_models = {"claude-sonnet-4-5": 0.1, "claude-haiku-4-5": 0.02}
    api = Attempt(
        cost=0.12, duration=14, log=log(3, "implemented the API", 0.12, models=two_models)
    )
    docs_failed = Attempt(
        status="failed",
        failure_kind="agent_error",
        reason="the CLI reported an error: the docs build needs network access",
        cost=0.02,
        duration=8,
        exit_code=1,
        log=log(5, "failed", 0.02, is_error=True),
    )
    plan = ["analyze/plan"]
    analyze = [
        ok("analyze", "inspect", 1, 0.04, 6),
        ok("analyze", "plan", 2, 0.03, 4, needs=["analyze/inspect"]),
    ]
    build = [
        TaskSpec(
            "build",
            "api",
            attempts=[retry, api],
            checks=[Check(exit_code=1, output="2 failed"), Check(exit_code=0, output="ok")],
            needs=plan,
            branch="pipeline/20261130T120000.000Z-abc123/build/api",
            changed_files=7,
        ),
        ok("build", "cli", 4, 0.08, 11, needs=plan, changed_files=3),
        TaskSpec("build", "docs", attempts=[docs_failed], needs=plan),
        ok("build", "tests", 6, 0.06, 16, needs=plan, changed_files=12),
    ]
    ship = [
        ok("ship", "review", 7, 0.05, 7, needs=["build/api", "build/cli", "build/tests"]),
        TaskSpec(
            "ship", "release", needs=["build/docs", "ship/review"], skipped_reason="upstream failed"
        ),
    ]
    stages = [
        ("analyze", "sequential", analyze),
        ("build", "parallel", build),
        ("ship", "sequential", ship),
    ]
    b.start(stages, budget_usd=2.0)
    for sid, mode, tasks in stages:
        b.stage(sid, mode, tasks)
    return b.finish()


def chromium(*args: str) -> None:
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        subprocess.run(
            [*CHROMIUM, f"--user-data-dir={profile}", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def ansi_to_html(screen: str) -> str:
    """tmux's ``capture-pane -e`` output (SGR colours and bold) as HTML spans."""
    out, open_span = [], False
    for part in re.split(r"(\x1b\[[0-9;]*m)", screen):
        if not part.startswith("\x1b["):
            out.append(html.escape(part))
            continue
        if open_span:
            out.append("</span>")
            open_span = False
        styles = []
        for code in part[2:-1].split(";"):
            if code in _COLOURS:
                styles.append(f"color:{_COLOURS[code]}")
            elif code == "1":
                styles.append("font-weight:bold")
            elif code == "2":
                styles.append("opacity:.6")
        if styles:
            out.append(f'<span style="{";".join(styles)}">')
            open_span = True
    if open_span:
        out.append("</span>")
    return "".join(out)


def live_screen(run: Path, tmp: Path) -> str:
    """The table mid-run: the driver pauses after build/tests starts."""
    steps: list[dict[str, Any]] = []
    tools = {
        "api": "Bash: pytest -q",
        "cli": "Edit",
        "docs": "Bash: mkdocs build",
        "tests": "Write",
    }
    pause_after = "tests"
    for line in (run / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "pipeline_result":
            continue
        steps.append({"event": e})
        if e["type"].endswith("task_start"):
            tool = tools.get(e["task_id"], "Read")
            steps.append({"activity": [e["stage_id"], e["task_id"], tool, 4, 0.031]})
            if e["task_id"] == pause_after:
                steps.append({"pause": "shot"})
    script = tmp / "script.jsonl"
    script.write_text("".join(json.dumps(s) + "\n" for s in steps))
    sock = str(tmp / "tmux.sock")
    tmux = ["tmux", "-S", sock, "-f", "/dev/null"]
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT / "src")}
    env.pop("NO_COLOR", None)
    driver = [sys.executable, "-m", "tests.progress_driver", str(script), "live", "--no-preamble"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "shot", "-x", "110", "-y", "12",
                    "-c", str(ROOT), *driver], check=True, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        screen = ""
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-e", "-t", "shot"],
                                    capture_output=True, text=True, check=True).stdout  # fmt: skip
            if "tests" in screen and "Write" in screen:
                break
            time.sleep(0.2)
        time.sleep(1.2)  # let the elapsed times tick once
        return subprocess.run([*tmux, "capture-pane", "-p", "-e", "-t", "shot"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


def main() -> int:
    docs = ROOT / "docs"
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp_name:
        tmp = Path(tmp_name)
        run = demo_run(tmp / "runs")
        write_reports(run, ["html"], env={})
        chromium("--window-size=1280,1400", f"--screenshot={docs / 'report-html.png'}",
                 (run / "report.html").as_uri())  # fmt: skip
        # One task opened (its transcript moved into the page by the page's script), the
        # sections above it hidden (headless Chromium photographs a scrolled page blank).
        page = (run / "report.html").read_text()
        head, _, rest = page.partition('id="t2"')
        page = head + 'id="t2" open' + rest.replace('class="e tool">', 'class="e tool" open>', 1)
        page = page.replace(
            "</style>", "#timeline, #graph, #costs, .filters { display: none }</style>", 1
        )
        opened = run / "opened.html"
        opened.write_text(page)
        chromium("--window-size=1280,1100", "--virtual-time-budget=3000",
                 f"--screenshot={docs / 'report-transcript.png'}", opened.as_uri())  # fmt: skip
        screen = live_screen(run, tmp)
        page = tmp / "terminal.html"
        page.write_text(
            "<!DOCTYPE html><html><body style='margin:0;background:#1e1e2e'>"
            "<pre style='margin:0;padding:14px 16px;color:#e6e6e6;font:14px/1.35 "
            "DejaVu Sans Mono,monospace'>"
            f"{ansi_to_html(screen.rstrip())}</pre></body></html>"
        )
        chromium(
            "--window-size=960,250", f"--screenshot={docs / 'progress-live.png'}", page.as_uri()
        )
    print("wrote docs/report-html.png, docs/report-transcript.png and docs/progress-live.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
