"""The JUnit XML report, in the dialect CI systems read (Maven Surefire's, which Jenkins,
GitLab, GitHub test-report actions and junitparser understand).

One ``<testsuite>`` per stage, one ``<testcase>`` per task (``classname`` the stage,
``name`` the task). A failed task has ``<failure type="<failure_kind>">`` with the reason;
a cancelled or unfinished one ``<error>``; a skipped or pending one ``<skipped>``.
Attempts are Surefire's re-runs: the earlier failed attempts of a task that finally
succeeded are ``<flakyFailure>``, those after the first failure of a task that never
succeeded ``<rerunFailure>``. The result text is ``<system-out>``; ``<system-err>``
names the log. Characters XML 1.0 forbids (control characters an agent may print) are
replaced, so the file always parses.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from claude_runner.reports.rundir import RunView, TaskView

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
_MESSAGE = 300


class _Text:
    """Masked, XML-safe, escaped text (for element text and attribute values alike).

    Written by hand rather than with ElementTree: serialising 1,000 test cases through
    it was most of the report's time."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact

    def __call__(self, value: object) -> str:
        text = "" if value is None else str(value)
        return _NOT_XML.sub("\ufffd", self.redact(text)).translate(_ESCAPE)


def _stamp(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _seconds(value: float | None) -> str:
    return f"{max(0.0, value or 0.0):.3f}"


def _first_line(text: str | None) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:_MESSAGE]


def _outcome(t: TaskView) -> tuple[str | None, str, str]:
    """(element, type, message) for the task's final state; element None = passed."""
    kind = t.failure_kind or ""
    if t.status == "failed":
        return "failure", kind or "failed", _first_line(t.reason) or "failed"
    if t.status == "cancelled":
        return "error", kind or "cancelled", _first_line(t.reason) or "cancelled"
    if t.status == "unfinished":
        return "error", "unfinished", "no task_finish: the run ended before this task did"
    if t.status in ("skipped", "pending"):
        default = "not started: the run ended first" if t.status == "pending" else "skipped"
        return "skipped", kind, _first_line(t.reason) or default
    return None, "", ""


def _testcase(t: TaskView, text: _Text) -> str:
    out = [
        f'  <testcase name="{text(t.task_id)}" classname="{text(t.stage_id)}" '
        f'time="{_seconds(t.duration_s)}">\n'
    ]
    element, kind, message = _outcome(t)
    if element == "skipped":
        out.append(f'   <skipped message="{text(message)}"/>\n')
    elif element is not None:
        out.append(
            f'   <{element} message="{text(message)}" type="{text(kind)}">'
            f"{text(t.reason or message)}</{element}>\n"
        )
    # Earlier attempts: re-runs of a task that ended failed, flaky runs of one that passed.
    if element != "skipped":
        tag = "flakyFailure" if t.status == "succeeded" else "rerunFailure"
        for a in t.attempts[:-1]:
            if a.status == "succeeded":
                continue
            label = f"attempt {a.attempt}: {_first_line(a.reason) or a.status}"
            out.append(
                f'   <{tag} message="{text(label)}" type="{text(a.failure_kind or a.status)}">'
                f"<stackTrace>{text(a.reason or '')}</stackTrace></{tag}>\n"
            )
    if t.result:
        out.append(f"   <system-out>{text(t.result)}</system-out>\n")
    err = [f"log: {t.log}"] if t.log is not None else []
    err += [f"branch: {t.branch}"] if t.branch else []
    err += [f"patch: {t.patch}"] if t.patch else []
    if err:
        out.append(f"   <system-err>{text(chr(10).join(err))}</system-err>\n")
    out.append("  </testcase>\n")
    return "".join(out)


def _counts(tasks: list[TaskView]) -> str:
    failures = sum(1 for t in tasks if t.status == "failed")
    errors = sum(1 for t in tasks if t.status in ("cancelled", "unfinished"))
    skipped = sum(1 for t in tasks if t.status in ("skipped", "pending"))
    return f'tests="{len(tasks)}" failures="{failures}" errors="{errors}" skipped="{skipped}"'


def render_junit(view: RunView, *, redact: Callable[[str], str] = str) -> str:
    """The report as JUnit XML text (masked by ``redact``)."""
    text = _Text(redact)
    name = text(f"claude-runner {view.plan_path or view.plan_run_id}")
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<testsuites name="{name}" {_counts(view.tasks)} time="{_seconds(view.duration_s)}">\n',
    ]
    by_stage: dict[str, list[TaskView]] = {}
    for t in view.tasks:
        by_stage.setdefault(t.stage_id, []).append(t)
    host = text(socket.gethostname())
    for stage in view.stages:
        tasks = by_stage.get(stage.id, [])
        stamp = _stamp(stage.start if stage.start is not None else view.start)
        when = f' timestamp="{stamp}"' if stamp else ""
        total = _seconds(sum(t.duration_s or 0.0 for t in tasks))
        out.append(
            f' <testsuite name="{text(stage.id)}" {_counts(tasks)} hostname="{host}" '
            f'time="{total}"{when}>\n  <properties>\n'
        )
        for prop, value in (
            ("plan_run_id", view.plan_run_id),
            ("run_status", view.status),
            ("stage_mode", stage.mode),
        ):
            if value:
                out.append(f'   <property name="{prop}" value="{text(value)}"/>\n')
        out.append("  </properties>\n")
        out.extend(_testcase(t, text) for t in tasks)
        out.append(" </testsuite>\n")
    out.append("</testsuites>\n")
    return "".join(out)
