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
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime

from claude_runner.reports.rundir import RunView, TaskView

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MESSAGE = 300


class _Text:
    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact

    def __call__(self, value: object) -> str:
        text = "" if value is None else str(value)
        return _NOT_XML.sub("\ufffd", self.redact(text))


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


def _testcase(t: TaskView, text: _Text) -> ET.Element:
    case = ET.Element(
        "testcase",
        {"name": text(t.task_id), "classname": text(t.stage_id), "time": _seconds(t.duration_s)},
    )
    element, kind, message = _outcome(t)
    if element == "skipped":
        ET.SubElement(case, "skipped", {"message": text(message)})
    elif element is not None:
        node = ET.SubElement(case, element, {"message": text(message), "type": text(kind)})
        node.text = text(t.reason or message)
    # Earlier attempts: re-runs of a task that ended failed, flaky runs of one that passed.
    earlier = [a for a in t.attempts[:-1] if a.status != "succeeded"]
    tag = "flakyFailure" if t.status == "succeeded" else "rerunFailure"
    for a in earlier if element in (None, "failure", "error") else []:
        rerun = ET.SubElement(
            case,
            tag,
            {
                "message": text(f"attempt {a.attempt}: {_first_line(a.reason) or a.status}"),
                "type": text(a.failure_kind or a.status),
            },
        )
        trace = ET.SubElement(rerun, "stackTrace")
        trace.text = text(a.reason or "")
    if t.result:
        ET.SubElement(case, "system-out").text = text(t.result)
    err = []
    if t.log is not None:
        err.append(f"log: {t.log}")
    if t.branch:
        err.append(f"branch: {t.branch}")
    if t.patch:
        err.append(f"patch: {t.patch}")
    if err:
        ET.SubElement(case, "system-err").text = text("\n".join(err))
    return case


def _counts(tasks: list[TaskView]) -> dict[str, str]:
    failures = sum(1 for t in tasks if t.status == "failed")
    errors = sum(1 for t in tasks if t.status in ("cancelled", "unfinished"))
    skipped = sum(1 for t in tasks if t.status in ("skipped", "pending"))
    return {
        "tests": str(len(tasks)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": str(skipped),
    }


def render_junit(view: RunView, *, redact: Callable[[str], str] = str) -> str:
    """The report as JUnit XML text (masked by ``redact``)."""
    text = _Text(redact)
    suites = ET.Element(
        "testsuites",
        {
            "name": text(f"claude-runner {view.plan_path or view.plan_run_id}"),
            **_counts(view.tasks),
            "time": _seconds(view.duration_s),
        },
    )
    by_stage: dict[str, list[TaskView]] = {}
    for t in view.tasks:
        by_stage.setdefault(t.stage_id, []).append(t)
    host = socket.gethostname()
    for stage in view.stages:
        tasks = by_stage.get(stage.id, [])
        attrs = {"name": text(stage.id), **_counts(tasks), "hostname": text(host)}
        attrs["time"] = _seconds(sum(t.duration_s or 0.0 for t in tasks))
        stamp = _stamp(stage.start if stage.start is not None else view.start)
        if stamp:
            attrs["timestamp"] = stamp
        suite = ET.SubElement(suites, "testsuite", attrs)
        props = ET.SubElement(suite, "properties")
        for name, value in (
            ("plan_run_id", view.plan_run_id),
            ("run_status", view.status),
            ("stage_mode", stage.mode),
        ):
            if value:
                ET.SubElement(props, "property", {"name": name, "value": text(value)})
        for t in tasks:
            suite.append(_testcase(t, text))
    ET.indent(suites, space=" ")
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
