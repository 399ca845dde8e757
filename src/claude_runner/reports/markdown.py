"""The Markdown report: a run's status, a table of its tasks and the tail of each failure.

Made for GitHub's step summary (``$GITHUB_STEP_SUMMARY`` accepts GitHub-flavoured
Markdown, at most 1 MiB per step): table rows and failure sections are capped, with a
line saying how many were left out. Text that came from an agent is escaped for table
cells (``|``, ``<``, newlines) and put in fences longer than any backtick run it holds,
so it cannot break the layout or inject HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from claude_runner.reports import fmt
from claude_runner.reports.rundir import RunView, TaskView

MAX_ROWS = 500
MAX_FAILURES = 30
_BACKTICKS = re.compile(r"`+")


def _cell(text: object) -> str:
    value = "" if text is None else str(text)
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    value = value.replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(value.split())


def _code(text: str) -> str:
    """``text`` in a fenced block whose fence no backtick run inside can close."""
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _inline(text: str) -> str:
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    tick = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{tick}{pad}{text}{pad}{tick}"


def _row(t: TaskView) -> str:
    attempts = len(t.attempts) or (0 if t.status in ("skipped", "pending") else 1)
    changed = "-" if t.changed_files is None else str(t.changed_files)
    cells = [
        _inline(t.key),
        f"{fmt.STATUS_MARK.get(t.status, '')} {t.status}",
        t.failure_kind or "",
        str(attempts),
        fmt.duration(t.duration_s),
        fmt.money(t.cost_usd, estimated=t.cost_estimated),
        changed,
        _inline(t.branch) if t.branch else "",
    ]
    return "| " + " | ".join(_cell(c) if i > 0 else c for i, c in enumerate(cells)) + " |"


def render_markdown(view: RunView, *, redact: Callable[[str], str] = str) -> str:
    """The report as Markdown text (masked by ``redact``)."""
    counts = view.counts()
    mark = fmt.STATUS_MARK.get(view.status, "")
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines = [
        f"## {mark} Pipeline run {_inline(view.plan_run_id)}: {view.status}",
        "",
        "| | |",
        "|---|---|",
        f"| status | {_cell(view.status)}{' (rehearsal)' if view.rehearsal else ''} |",
        f"| tasks | {_cell(summary or 'none')} |",
        f"| duration | {fmt.duration(view.duration_s)} |",
        f"| cost | {fmt.money(view.cost_usd)} |",
        f"| tokens | {fmt.tokens(view.usage.get('input_tokens'))} in, "
        f"{fmt.tokens(view.usage.get('output_tokens'))} out |",
    ]
    if view.plan_path:
        lines.append(f"| plan | {_inline(view.plan_path)} |")
    if view.budget:
        spent, limit = view.budget.get("spent_usd"), view.budget.get("limit_usd")
        lines.append(f"| budget | {_cell(fmt.money(spent))} of {_cell(fmt.money(limit))} |")
    if not view.complete:
        lines += [
            "",
            "> [!WARNING]",
            "> This run has no result: it is still running, or the runner stopped before "
            "the end. Tasks marked unfinished or pending did not report a result.",
        ]
    lines += [
        "",
        "### Tasks",
        "",
        "| task | status | failure kind | attempts | duration | cost | changed files | branch |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [_row(t) for t in view.tasks[:MAX_ROWS]]
    if len(view.tasks) > MAX_ROWS:
        lines.append(f"\n… and {len(view.tasks) - MAX_ROWS} more tasks (see the HTML report).")
    failures = [t for t in view.tasks if t.status in ("failed", "cancelled", "unfinished")]
    if failures:
        lines += ["", "### Failures"]
    for t in failures[:MAX_FAILURES]:
        kind = f" ({t.failure_kind})" if t.failure_kind else ""
        lines += ["", f"#### {_inline(t.key)}: {t.status}{kind}", ""]
        reason = fmt.tail(t.reason) or "no reason recorded"
        lines.append(_code(reason))
        if t.checks and not t.checks[-1].passed:
            lines.append(f"\nlast check: exit code {t.checks[-1].exit_code}")
    if len(failures) > MAX_FAILURES:
        lines.append(f"\n… and {len(failures) - MAX_FAILURES} more failures.")
    return redact("\n".join(lines) + "\n")
