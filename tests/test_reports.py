"""Reports from a run directory: reading it (finished, crashed, moved), Markdown, JUnit
(parsed by junitparser, the parser CI result publishers use), HTML (rendered in headless
Chromium), masking, and the ``claude-pipeline`` command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from junitparser import JUnitXml, Skipped, xunit2
from PIL import Image

from claude_runner import proc
from claude_runner.errors import RunDirError, UsageError
from claude_runner.redact import Redactor
from claude_runner.reports import parse_formats, render, write_reports
from claude_runner.reports.rundir import read_run
from claude_runner.reports.transcript import read_window
from tests import rundirs
from tests.rundirs import Attempt, RunBuilder, TaskSpec, sample_run

SECRET = "sk-fake-report-secret-0123456789abcdef"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def pipeline_bin() -> str:
    return str(Path(sys.executable).parent / "claude-pipeline")


def run_pipeline_cmd(*args: str, env: dict[str, str] | None = None) -> proc.Completed:
    return proc.run([pipeline_bin(), *args], env=env or dict(os.environ), timeout=60)


# --- reading a run directory ------------------------------------------------------------


def test_a_finished_v2_run_is_read_whole(tmp_path: Path) -> None:
    view = read_run(sample_run(tmp_path))
    assert (view.status, view.complete) == ("failed", True)
    assert [t.key for t in view.tasks] == [
        "analyze/inspect",
        "build/code",
        "build/docs",
        "ship/release",
    ]
    code = view.find("build/code")
    assert [a.status for a in code.attempts] == ["failed", "succeeded"]
    assert code.attempts[0].failure_kind == "rate_limited"
    # Paths were written as /runs/<id>/...: rebased onto where the directory is now.
    assert code.attempts[0].log == view.run_dir / "tasks/build/code/attempt-1/agent.log"
    assert code.log == view.run_dir / "tasks/build/code/agent.log"
    assert code.attempts[0].start is not None
    assert code.attempts[1].start is not None
    assert [c.passed for c in code.checks] == [False, True]
    assert code.needs == ["analyze/inspect"]
    release = view.find("release")
    assert (release.status, release.failure_kind, release.attempts) == (
        "skipped",
        "upstream_failed",
        [],
    )
    assert view.budget is not None
    assert view.budget["limit_usd"] == 5.0
    assert view.counts() == {"succeeded": 2, "failed": 1, "cancelled": 0, "skipped": 1}


def _crashed(tmp_path: Path) -> Path:
    """A run killed while build/code ran: its log has a tool call and no result; ship
    never started; the last event line is cut in half."""
    b = RunBuilder(tmp_path)
    inspect = TaskSpec(
        "analyze", "inspect", attempts=[Attempt(cost=0.02, log=rundirs.transcript("s1", cost=0.02))]
    )
    running = TaskSpec(
        "build",
        "code",
        attempts=[
            Attempt(
                log=rundirs.init_line("s2")
                + rundirs.tool_use("s2", "toolu_1", "Bash", {"command": "make test"})
            )
        ],
    )
    release = TaskSpec("ship", "release")
    stages = [
        ("analyze", "sequential", [inspect]),
        ("build", "sequential", [running]),
        ("ship", "sequential", [release]),
    ]
    b.start(stages)
    b.stage("analyze", "sequential", [inspect])
    b.emit("stage_start", stage_id="build", mode="sequential", max_parallel=None, task_count=1)
    return b.crash(unfinished=running)


def test_a_crashed_run_is_derived_from_events_and_task_dirs(tmp_path: Path) -> None:
    view = read_run(_crashed(tmp_path))
    assert (view.status, view.complete) == ("incomplete", False)
    assert [(t.key, t.status) for t in view.tasks] == [
        ("analyze/inspect", "succeeded"),
        ("build/code", "unfinished"),
        ("ship/release", "pending"),
    ]
    assert any("cut off" in p for p in view.problems)
    assert view.find("analyze/inspect").cost_usd == 0.02
    assert view.find("build/code").log is not None


def test_tasks_own_results_fill_in_when_events_stop_early(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    (run / "result.json").unlink()
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if "task_finish" not in ln and "plan_finish" not in ln]
    kept = [ln for ln in kept if "pipeline_result" not in ln]
    (run / "events.jsonl").write_text("".join(kept))
    view = read_run(run)
    assert not view.complete
    statuses = {t.key: t.status for t in view.tasks}
    # The three started tasks wrote tasks/<stage>/<task>/result.json when they finished.
    assert statuses == {
        "analyze/inspect": "succeeded",
        "build/code": "succeeded",
        "build/docs": "failed",
        "ship/release": "pending",
    }
    assert view.find("build/docs").failure_kind == "agent_error"


def test_not_a_run_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a run directory"):
        read_run(tmp_path)
    with pytest.raises(RunDirError, match="not found"):
        read_run(tmp_path / "missing")
    view = read_run(sample_run(tmp_path))
    with pytest.raises(RunDirError, match="no task 'nope'"):
        view.find("nope")


def test_task_output_lines_are_skipped_unparsed(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    text = (run / "events.jsonl").read_text()
    # A vv run repeats the agent's stream in events.jsonl; an unparseable one would be
    # reported as a problem if it were parsed.
    noise = '{"type":"pipeline_event.task_output","stage_id":"build",BROKEN\n'
    (run / "events.jsonl").write_text(noise * 100 + text)
    assert read_run(run).problems == []


def test_a_big_log_is_read_as_head_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text(rundirs.transcript("s", tools=400, pad=2000, result="the end"))
    window = read_window(log, 16 * 1024)
    kinds = [e.kind for e in window.entries]
    assert "gap" in kinds
    assert kinds[-1] == "result"
    assert window.omitted > log.stat().st_size - 16 * 1024 - 4096
    assert window.entries[-1].text == "the end"


# --- Markdown -----------------------------------------------------------------------------


def test_markdown_has_the_status_the_tasks_and_failure_tails(tmp_path: Path) -> None:
    text = render(read_run(sample_run(tmp_path)), "markdown", redact=str)
    assert text.startswith("## ❌ Pipeline run `20261130T120000.000Z-abc123`: failed\n")
    assert "| `build/code` | ✅ succeeded |  | 2 | " in text
    assert "| `build/docs` | ❌ failed | agent_error | 1 | " in text
    assert "| `ship/release` | ⏭️ skipped | upstream_failed | 0 | " in text
    assert "`pipeline/20261130T120000.000Z-abc123/build/code`" in text
    assert "| budget | $0.0740 of $5.00 |" in text
    # The reason is shown verbatim inside a fence, not as HTML.
    assert "```text\nthe CLI reported an error: <b>bad</b> | pipe\n```" in text


def test_markdown_fences_and_cells_cannot_be_broken_by_agent_text(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path)
    reason = "boom ```` fence\n| cell <script>x</script>"
    t = TaskSpec(
        "s", "t", attempts=[Attempt(status="failed", failure_kind="crash|x", reason=reason)]
    )
    b.start([("s", "sequential", [t])])
    b.stage("s", "sequential", [t])
    text = render(read_run(b.finish()), "markdown", redact=str)
    assert "`````text\nboom ```` fence\n| cell <script>x</script>\n`````" in text
    assert "| crash\\|x |" in text


def test_write_reports_writes_files_and_appends_the_step_summary(tmp_path: Path) -> None:
    run = sample_run(tmp_path / "runs")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    written = write_reports(run, ["html", "junit"], env=env)
    assert written == [run / "report.html", run / "report.junit.xml", summary]
    text = summary.read_text()
    assert text.startswith("earlier step\n## ❌ Pipeline run")
    # Without formats and without a summary file nothing is read or written.
    assert write_reports(tmp_path / "missing", [], env={}) == []
    # The summary alone when no format is asked for.
    write_reports(run, [], env=env)
    assert summary.read_text().count("## ❌ Pipeline run") == 2


def test_write_reports_fails_with_one_clear_error(tmp_path: Path) -> None:
    run = sample_run(tmp_path / "runs")
    with pytest.raises(RunDirError, match=r"cannot write a report: .*Is a directory"):
        write_reports(run, [], env={"GITHUB_STEP_SUMMARY": str(tmp_path)})


def test_report_formats_are_parsed_strictly() -> None:
    assert parse_formats("html,junit,html") == ("html", "junit")
    with pytest.raises(UsageError, match="unknown report format 'pdf'"):
        parse_formats("html,pdf")
    with pytest.raises(UsageError):
        parse_formats(" , ")


# --- JUnit --------------------------------------------------------------------------------


def test_junit_is_read_by_a_real_parser(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    out = tmp_path / "report.xml"
    out.write_text(render(read_run(run), "junit", redact=str))
    xml = JUnitXml.fromfile(str(out))
    suites = {s.name: s for s in xml}
    assert list(suites) == ["analyze", "build", "ship"]
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (4, 1, 0, 1)
    build = {c.name: c for c in suites["build"]}
    assert build["code"].is_passed
    assert build["code"].classname == "build"
    [failure] = build["docs"].result
    assert (failure.type, failure.message) == (
        "agent_error",
        "the CLI reported an error: <b>bad</b> | pipe",
    )
    assert build["docs"].system_out == "failed"
    [skip] = next(iter(suites["ship"])).result
    assert isinstance(skip, Skipped)
    # The earlier attempt of the task that passed is a Surefire flaky failure.
    code = next(c for s in xunit2.JUnitXml.fromfile(str(out)) for c in s if c.name == "code")
    assert isinstance(code, xunit2.TestCase)
    [first] = code.flaky_failures()
    assert first.type == "rate_limited"
    assert first.message == "attempt 1: API Error: 429 rate limited"
    assert code.rerun_failures() == []


def test_junit_attempts_of_a_task_that_never_passed_are_reruns(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path)
    t = TaskSpec(
        "s",
        "t",
        attempts=[
            Attempt(status="failed", failure_kind="api_error", reason=f"529 overloaded #{n}")
            for n in (1, 2, 3)
        ],
    )
    b.start([("s", "sequential", [t])])
    b.stage("s", "sequential", [t])
    out = tmp_path / "report.xml"
    out.write_text(render(read_run(b.finish()), "junit", redact=str))
    [case] = [c for s in xunit2.JUnitXml.fromfile(str(out)) for c in s]
    assert isinstance(case, xunit2.TestCase)
    [final] = case.result
    assert (final.type, final.message) == ("api_error", "529 overloaded #3")
    assert [r.message for r in case.rerun_failures()] == [
        "attempt 1: 529 overloaded #1",
        "attempt 2: 529 overloaded #2",
    ]


def test_junit_of_a_crashed_run_and_of_control_characters_still_parses(tmp_path: Path) -> None:
    run = _crashed(tmp_path)
    view = read_run(run)
    view.find("analyze/inspect").result = "bell \x07 and nul \x00 and esc \x1b[31m"
    out = tmp_path / "report.xml"
    out.write_text(render(view, "junit", redact=str))
    xml = JUnitXml.fromfile(str(out))
    cases = {c.name: c for s in xml for c in s}
    assert cases["inspect"].system_out == "bell \ufffd and nul \ufffd and esc \ufffd[31m"
    [error] = cases["code"].result
    assert error._tag == "error"
    assert error.type == "unfinished"
    [pending] = cases["release"].result
    assert pending._tag == "skipped"


# --- HTML ---------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(text)
    return parser.attrs


def test_html_is_self_contained_and_holds_every_task(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    text = render(read_run(run), "html", redact=str, out_dir=run)
    tags = _tags(text)
    assert [a["data-task"] for t, a in tags if t == "details" and "data-task" in a] == [
        "analyze/inspect",
        "build/code",
        "build/docs",
        "ship/release",
    ]
    # Nothing is fetched: no src/link attributes, and links are the logs, relative.
    assert not [a for t, a in tags if "src" in a or t == "link"]
    hrefs = {a["href"] for t, a in tags if t == "a" and a.get("href")}
    external = [h for h in hrefs if h and re.match(r"[a-z]+:", h)]
    assert external == []
    assert "tasks/build/code/agent.log" in hrefs
    assert all((run / h).exists() for h in hrefs if h and not h.startswith("#"))
    # Timeline segments: one per attempt, with the failed first attempt of build/code.
    segs = [a["class"] for t, a in tags if t == "span" and (a.get("class") or "").startswith("seg")]
    assert segs.count("seg st-failed") == 2
    assert segs.count("seg st-succeeded") == 2
    # Per-model costs from the logs' modelUsage.
    assert "claude-haiku-4-5" in text
    # The transcript: a tool call with its command and its result.
    assert "pytest -q tests/test_0.py" in text
    assert "0 passed in 0.1s" in text


def test_secrets_are_masked_in_every_report(tmp_path: Path) -> None:
    shaped = "sk-ant-api03-abcdefghijklmnop"
    run = sample_run(tmp_path, secret=f"{SECRET} {shaped}")
    redact = Redactor.from_env({"ANTHROPIC_API_KEY": SECRET})
    view = read_run(run)
    for fmt in ("markdown", "junit", "html"):
        text = render(view, fmt, redact=redact, out_dir=run)
        assert SECRET not in text, fmt
        assert shaped not in text, fmt
        assert "***" in text, fmt


def test_html_stays_small_for_many_tasks_with_big_logs(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path)
    log = rundirs.transcript("s", tools=30, pad=1500)  # ~50 KB
    tasks = [TaskSpec("s", f"t{n:03d}", attempts=[Attempt(log=log)]) for n in range(200)]
    b.start([("s", "parallel", tasks)])
    b.stage("s", "parallel", tasks)
    run = b.finish()
    text = render(read_run(run), "html", redact=str, out_dir=run)
    logs = sum((run / "tasks/s" / t.id / "agent.log").stat().st_size for t in tasks)
    assert logs > 9_000_000
    assert len(text.encode()) < 4_500_000
    assert text.count('class="e gap"') == 200  # each transcript cut, with a link


def _chromium(tmp_path: Path, *args: str) -> proc.Completed:
    binary = shutil.which("chromium")
    if binary is None:
        reason = "chromium not found: run scripts/setup-dev.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    profile = tmp_path / f"chromium-{time.monotonic_ns()}"
    done = proc.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_html_renders_in_chromium(tmp_path: Path) -> None:
    run = sample_run(tmp_path / "runs")
    write_reports(run, ["html"], env={})
    url = (run / "report.html").as_uri()
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", url)
    with Image.open(shot) as image:
        assert image.size == (1200, 1600)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
    # A blank page has one colour; this one has text, bars and badges in many.
    assert len(colours) > 50
    # The DOM after the scripts ran: every task; a link to one status hides the others;
    # opening a task moves its transcript into the page.
    dom = _chromium(tmp_path, "--dump-dom", url + "#status=failed").stdout
    tasks = {a["data-task"]: a for t, a in _tags(dom) if t == "details" and "data-task" in a}
    assert set(tasks) == {"analyze/inspect", "build/code", "build/docs", "ship/release"}
    assert [k for k, a in tasks.items() if "hidden" not in a] == ["build/docs"]
    dom = _chromium(tmp_path, "--dump-dom", url + "#t1").stdout
    opened = dom.split('data-task="build/code"')[1].split("</details>\n")[0]
    transcript = opened.split('<div class="transcript">')[1]
    assert transcript.startswith('<div class="e attempt">attempt 1</div>')
    assert transcript.index("API Error: 429") < transcript.index("attempt 2")
    assert '<details class="e tool"><summary><b>Bash</b> <code>pytest -q' in transcript


# --- claude-pipeline ----------------------------------------------------------------------


def test_pipeline_report_command_writes_a_file_or_stdout(tmp_path: Path) -> None:
    run = sample_run(tmp_path / "runs")
    out = tmp_path / "out" / "r.html"
    out.parent.mkdir()
    done = run_pipeline_cmd("report", str(run), "--format", "html", "-o", str(out))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert "../runs/20261130T120000.000Z-abc123/tasks/build/code/agent.log" in out.read_text()
    env = {**os.environ, "PIPELINE_WORKSPACES_ROOT": str(tmp_path / "runs")}
    done = run_pipeline_cmd("report", "latest", "--format", "junit", env=env)
    assert done.returncode == 0
    assert done.stdout.startswith("<?xml")
    done = run_pipeline_cmd("report", run.name, "--format", "markdown", env=env)
    assert done.returncode == 0
    assert "### Failures" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "/nonexistent-run", "--format", "html"], "run not found: '/nonexistent-run'"),
        (["report", "RUN", "--format", "pdf"], "invalid choice: 'pdf'"),
        (["logs", "RUN", "nope"], "no task 'nope' in run"),
        (["logs", "RUN", "ship/release"], "task ship/release has no agent log"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_pipeline_command_errors_are_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    run = sample_run(tmp_path)
    done = run_pipeline_cmd(*[str(run) if a == "RUN" else a for a in args])
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("claude-pipeline: error: ")
    assert message in done.stderr


def test_logs_prints_every_attempt_of_a_task(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    done = run_pipeline_cmd("logs", str(run), "build/code", env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("── attempt 1") < out.index("API Error: 429") < out.index("── attempt 2")
    assert "▶ Bash  pytest -q tests/test_0.py\n  ◀ 0 passed in 0.1s" in out
    assert "■ result (success, 3 turns, $0.0500)\nimplemented" in out
    assert "\x1b[" not in out


def test_logs_masks_secrets(tmp_path: Path) -> None:
    run = sample_run(tmp_path, secret=SECRET)
    done = run_pipeline_cmd(
        "logs", str(run), "docs", env={**os.environ, "ANTHROPIC_API_KEY": SECRET}
    )
    assert done.returncode == 0
    assert SECRET not in done.stdout
    assert "I will print the key token ***" in done.stdout
    assert "not json at all" in done.stdout  # non-JSON lines are shown, not dropped


class _Reader:
    """Collects a child's stdout in a thread; bounded waits for text to appear."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.text = ""
        self.lock = threading.Lock()
        assert child.stdout is not None
        self.stream = child.stdout
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in iter(self.stream.readline, b""):
            with self.lock:
                self.text += line.decode()

    def wait_for(self, needle: str, deadline: float = 30.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self.lock:
                if needle in self.text:
                    return
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not printed within {deadline}s:\n{self.text}")


def test_logs_follow_prints_a_running_task_until_it_finishes(tmp_path: Path) -> None:
    b = RunBuilder(tmp_path)
    task = TaskSpec("s", "t")
    b.start([("s", "sequential", [task])])
    b.emit("stage_start", stage_id="s", mode="sequential", max_parallel=None, task_count=1)
    b.emit("task_start", stage_id="s", task_id="t", model=None, workspace_mode="shared",
           workspace="/w", log=b.origin(b.task_dir(task) / "agent.log"), attempt=1,
           instance_of=None, workspace_method="shared", read_only=None)  # fmt: skip
    b.events.flush()
    log = b.dir / "tasks/s/t/agent.log"
    log.write_text(rundirs.init_line("s1"))
    child = proc.spawn(
        [pipeline_bin(), "logs", str(b.dir), "s/t", "--follow"],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
    )
    try:
        out = _Reader(child)
        out.wait_for("session started")
        with log.open("a") as f:
            f.write(rundirs.tool_use("s1", "toolu_9", "Bash", {"command": "make"}))
        out.wait_for("▶ Bash  make")
        # A retry: the log moves aside, a new one starts.
        (b.dir / "tasks/s/t/attempt-1").mkdir()
        log.rename(b.dir / "tasks/s/t/attempt-1/agent.log")
        log.write_text(rundirs.init_line("s2") + rundirs.assistant_text("s2", "second try"))
        out.wait_for("second try")
        assert "── attempt 2" in out.text
        assert child.poll() is None  # still following: no task_finish yet
        with log.open("a") as f:
            f.write(rundirs.result_line("s2", "all done", cost=0.01, turns=2))
        b.emit("task_finish", stage_id="s", task_id="t", status="succeeded")
        b.events.flush()
        assert child.wait(timeout=30) == 0
        out.thread.join(timeout=10)
        assert out.text.endswith("■ result (success, 2 turns, $0.0100)\nall done\n")
    finally:
        if child.poll() is None:
            proc.stop(child, grace=2.0)


def test_events_jsonl_from_the_builder_follows_the_contract(tmp_path: Path) -> None:
    """The synthetic runs use the event envelope of the real writer."""
    from claude_runner.pipeline.events import EVENT_KEYS  # noqa: PLC0415

    run = sample_run(tmp_path)
    for line in (run / "events.jsonl").read_text().splitlines():
        body = json.loads(line)
        if body["type"] in EVENT_KEYS:
            assert set(EVENT_KEYS[body["type"]]) <= set(body), body["type"]
