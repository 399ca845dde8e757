"""The HTML report: one self-contained file (inline CSS, JS and SVG; nothing fetched), so it
works opened from a CI artifact.

Sections: the run's facts; a filter by status; a timeline of tasks and their attempts
(bars on the run's time axis, coloured by status, check runs as ticks); the plan graph;
cost and tokens per model and per task; each task with its reason, result, attempts,
checks and transcript (assistant text, tool calls with input and result, collapsible).

Size stays bounded whatever the run: the transcripts share ``TRANSCRIPT_BUDGET`` bytes of
log (a task gets its share, at least ``MIN_WINDOW``), read as the head and the tail of
its log with a link to the whole file, and long texts are clipped. Transcripts sit in
``<template>`` elements that the page moves into the document when a task is opened,
so a browser lays out 1,000 tasks without building 1,000 transcripts. The whole page
is masked by ``redact`` at the end, attributes and scripts included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from claude_runner.reports import fmt
from claude_runner.reports.graph import render_graph
from claude_runner.reports.rundir import (
    PENDING,
    STATUSES,
    UNFINISHED,
    ModelUsage,
    RunView,
    TaskView,
    model_usage,
)
from claude_runner.reports.transcript import Entry, read_window

TRANSCRIPT_BUDGET = 3 * 1024 * 1024
MIN_WINDOW = 4 * 1024
MAX_WINDOW = 1024 * 1024
MAX_TIMELINE_ROWS = 2000
_SHOWN_STATUSES = (*STATUSES, UNFINISHED, PENDING)


def _asset(name: str) -> str:
    return (resources.files("claude_runner.reports") / "assets" / name).read_text("utf-8")


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters)"


def _anchor(t: TaskView, index: dict[str, int]) -> str:
    return f"t{index[t.key]}"


class _Page:
    """Accumulates the document's parts; one per render."""

    def __init__(self, view: RunView, out_dir: Path) -> None:
        self.view = view
        self.out_dir = out_dir
        self.run_prefix = str(view.run_dir).rstrip("/") + "/"
        rel = os.path.relpath(view.run_dir, out_dir)
        self.rel_prefix = "" if rel == "." else rel + "/"
        self.parts: list[str] = []
        self.index = {t.key: n for n, t in enumerate(view.tasks)}
        logs = sum(1 for t in view.tasks if t.log is not None) or 1
        self.window = max(MIN_WINDOW, min(MAX_WINDOW, TRANSCRIPT_BUDGET // logs))
        self.clip = max(600, self.window // 3)

    def add(self, *text: str) -> None:
        self.parts.extend(text)

    def href(self, path: Path) -> str:
        """A link to ``path`` relative to the report (one relpath per report: the links
        inside the run directory share its prefix)."""
        text = str(path)
        if text.startswith(self.run_prefix):
            return escape(self.rel_prefix + text[len(self.run_prefix) :])
        return escape(os.path.relpath(text, self.out_dir))

    def anchor(self, t: TaskView) -> str:
        return _anchor(t, self.index)

    # -- sections ----------------------------------------------------------------------

    def header(self) -> None:
        v = self.view
        counts = v.counts()
        self.add(
            f'<h1>Pipeline run <span class="mono">{escape(v.plan_run_id)}</span> '
            f'<span class="badge b-{escape(v.status)}">{escape(v.status)}</span>',
            ' <span class="badge b-skipped">rehearsal</span>' if v.rehearsal else "",
            "</h1><div class='facts'>",
        )
        facts = [
            ("plan", v.plan_path or "-"),
            ("started", fmt.clock(v.start)),
            ("duration", fmt.duration(v.duration_s)),
            ("cost", fmt.money(v.cost_usd)),
            ("input tokens", fmt.tokens(v.usage.get("input_tokens"))),
            ("output tokens", fmt.tokens(v.usage.get("output_tokens"))),
            ("turns", str(v.num_turns)),
            ("tasks", ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"),
        ]
        if v.budget:
            spent, limit = v.budget.get("spent_usd"), v.budget.get("limit_usd")
            left = (
                limit - spent
                if isinstance(limit, float | int) and isinstance(spent, float | int)
                else None
            )
            facts.append(
                ("budget", f"{fmt.money(spent)} of {fmt.money(limit)}, {fmt.money(left)} left")
            )
        for name, value in facts:
            self.add(f"<span>{escape(name)} <b>{escape(value)}</b></span>")
        self.add("</div>")
        if not v.complete:
            self.add(
                '<p class="warn">This run has no result: it is still running, or the runner '
                "stopped before the end. What is shown was read from its events and task "
                "directories.</p>"
            )
        for problem in v.problems[:10]:
            self.add(f'<p class="warn">{escape(problem)}</p>')

    def filters(self) -> None:
        counts = self.view.counts()
        self.add('<div class="filters"><button class="on" data-show="all">all ')
        self.add(f"{len(self.view.tasks)}</button>")
        for status in _SHOWN_STATUSES:
            if counts.get(status):
                self.add(
                    f'<button data-show="{status}"><span class="badge b-{status}">'
                    f"{counts[status]}</span> {status}</button>"
                )
        self.add("</div>")

    def timeline(self) -> None:
        v = self.view
        starts = [a.start for t in v.tasks for a in t.attempts if a.start is not None]
        begin = v.start if v.start is not None else min(starts, default=None)
        ends = [a.end for t in v.tasks for a in t.attempts if a.end is not None]
        finish = max([*ends, *(x for x in (v.end,) if x is not None)], default=None)
        self.add("<h2>Timeline</h2>")
        if begin is None or finish is None or not starts:
            self.add("<p>No task started.</p>")
            return
        span = max(finish - begin, 1e-3)

        def pct(at: float) -> str:
            return f"{max(0.0, min(100.0, (at - begin) / span * 100)):.2f}"

        self.add('<div class="tl"><div class="tl-axis">')
        for n in range(6):
            self.add(f'<span style="left:{n * 20}%">{fmt.duration(span * n / 5)}</span>')
        self.add("</div>")
        shown = [t for t in v.tasks if t.attempts][:MAX_TIMELINE_ROWS]
        for t in shown:
            self.add(
                f'<div class="tl-row" data-status="{t.status}"><a class="tl-label" '
                f'href="#{self.anchor(t)}" title="{escape(t.key)}">{escape(t.key)}</a>'
                '<div class="tl-track">'
            )
            for a in t.attempts:
                if a.start is None:
                    continue
                end = a.end if a.end is not None else finish
                status = a.status if a.end is not None else UNFINISHED
                width = max(0.0, (end - a.start) / span * 100)
                kind = f" ({a.failure_kind})" if a.failure_kind else ""
                title = (
                    f"{t.key} attempt {a.attempt}: {status}{kind}, {fmt.duration(end - a.start)}"
                )
                self.add(
                    f'<span class="seg st-{escape(status)}" style="left:{pct(a.start)}%;'
                    f'width:{width:.2f}%" title="{escape(title)}"></span>'
                )
            for c in t.checks:
                if c.ts is not None:
                    css = "chk" if c.passed else "chk fail"
                    label = f"check {c.run}: exit {c.exit_code}"
                    self.add(
                        f'<i class="{css}" style="left:{pct(c.ts)}%" title="{escape(label)}"></i>'
                    )
            self.add("</div></div>")
        hidden = sum(1 for t in v.tasks if t.attempts) - len(shown)
        if hidden > 0:
            self.add(f'<p class="tl-more">… {hidden} more tasks not drawn</p>')
        self.add("</div>")

    def graph(self) -> None:
        self.add('<h2>Plan graph</h2><div class="graph-wrap">')
        self.add(render_graph(self.view, self.anchor))
        self.add("</div>")

    def costs(self, usage: dict[str, dict[str, ModelUsage]]) -> None:
        per_model: dict[str, ModelUsage] = {}
        for models in usage.values():
            for name, u in models.items():
                per_model.setdefault(name, ModelUsage()).add(u)
        self.add("<h2>Cost and tokens</h2><h3>Per model</h3><table><tr><th>model</th>")
        heads = ("cost", "input", "output", "cache read", "cache write")
        self.add("".join(f'<th class="n">{h}</th>' for h in heads), "</tr>")
        for name, u in sorted(per_model.items(), key=lambda kv: -kv[1].cost_usd):
            self.add(
                f"<tr><td class='mono'>{escape(name)}</td>"
                f"<td class='n'>{fmt.money(u.cost_usd)}</td>"
                f"<td class='n'>{u.input_tokens}</td><td class='n'>{u.output_tokens}</td>"
                f"<td class='n'>{u.cache_read_input_tokens}</td>"
                f"<td class='n'>{u.cache_creation_input_tokens}</td></tr>"
            )
        self.add("</table>")
        self.task_costs(usage)

    def task_costs(self, usage: dict[str, dict[str, ModelUsage]]) -> None:
        self.add("<h3>Per task</h3><div class='scroll'><table><tr><th>task</th>")
        self.add("<th>status</th><th>model</th>")
        heads = ("attempts", "turns", "duration", "cost", "input", "output", "cache read")
        self.add("".join(f'<th class="n">{h}</th>' for h in heads), "</tr>")
        for t in self.view.tasks:
            models = ", ".join(usage.get(t.key, {})) or (t.model or "-")
            tokens = t.usage
            self.add(
                f'<tr data-status="{t.status}"><td><a href="#{self.anchor(t)}">'
                f"{escape(t.key)}</a></td><td>{t.status}</td>"
                f"<td class='mono'>{escape(models)}</td>"
                f"<td class='n'>{len(t.attempts)}</td><td class='n'>{t.num_turns or '-'}</td>"
                f"<td class='n'>{fmt.duration(t.duration_s)}</td>"
                f"<td class='n'>{fmt.money(t.cost_usd, estimated=t.cost_estimated)}</td>"
                f"<td class='n'>{tokens.get('input_tokens', '-')}</td>"
                f"<td class='n'>{tokens.get('output_tokens', '-')}</td>"
                f"<td class='n'>{tokens.get('cache_read_input_tokens', '-')}</td></tr>"
            )
        self.add("</table></div>")

    def tasks(self) -> None:
        self.add("<h2>Tasks</h2>")
        stage = None
        for t in self.view.tasks:
            if t.stage_id != stage:
                stage = t.stage_id
                self.add(f'<h3 id="stage-{escape(stage)}">Stage {escape(stage)}</h3>')
            self.task(t)

    def task(self, t: TaskView) -> None:
        kind = f" · {escape(t.failure_kind)}" if t.failure_kind else ""
        self.add(
            f'<details class="task" id="{self.anchor(t)}" data-status="{t.status}" '
            f'data-task="{escape(t.key)}"><summary><span class="badge b-{t.status}">'
            f'{t.status}</span> <b class="mono">{escape(t.key)}</b>{kind} · '
            f"{len(t.attempts)} attempt{'s' if len(t.attempts) != 1 else ''} · "
            f"{fmt.duration(t.duration_s)} · {fmt.money(t.cost_usd, estimated=t.cost_estimated)}"
            '</summary><div class="body">'
        )
        facts = [
            ("model", t.model),
            ("workspace", t.workspace_mode),
            ("session", t.session_id),
            ("branch", t.branch),
            ("patch", t.patch),
            ("changed files", None if t.changed_files is None else str(t.changed_files)),
            ("exit code", None if t.exit_code is None else str(t.exit_code)),
            ("signal", t.signal),
            ("needs", ", ".join(t.needs) or None),
        ]
        for name, value in facts:
            if value:
                self.add(f'<div class="kv">{name} <b class="mono">{escape(value)}</b></div>')
        if t.reason:
            self.add(f'<pre class="reason">{escape(_clip(t.reason, 4000))}</pre>')
        if t.result:
            self.add(f"<div class='kv'>result</div><pre>{escape(_clip(t.result, 4000))}</pre>")
        if len(t.attempts) > 1:
            self.add("<table><tr><th>attempt</th><th>status</th><th>kind</th><th class='n'>")
            self.add("duration</th><th class='n'>cost</th><th>reason</th></tr>")
            for a in t.attempts:
                self.add(
                    f"<tr><td>{a.attempt}</td><td>{escape(a.status)}</td>"
                    f"<td>{escape(a.failure_kind or '')}</td>"
                    f"<td class='n'>{fmt.duration(a.duration_s)}</td>"
                    f"<td class='n'>{fmt.money(a.cost_usd, estimated=a.cost_estimated)}</td>"
                    f"<td>{escape(_clip(a.reason or '', 300))}</td></tr>"
                )
            self.add("</table>")
        for c in t.checks:
            verdict = "passed" if c.passed else "failed"
            link = f' <a href="{self.href(c.log)}">log</a>' if c.log else ""
            self.add(
                f"<div class='kv'>check {c.run}: <b>{verdict}</b>, exit code {c.exit_code}, "
                f"{fmt.duration(c.duration_s)}{link}</div>"
            )
        logs = list(dict.fromkeys(a.log for a in t.attempts if a.log is not None))
        if t.log is not None and not logs:
            logs = [t.log]
        if logs:
            self.add(
                f'<div class="kv">transcript · <a href="{self.href(logs[-1])}">full log</a>'
                + (f' · <a href="{self.href(t.stderr_log)}">stderr</a>' if t.stderr_log else "")
                + '</div><div class="transcript"></div><template>'
            )
            window = max(MIN_WINDOW, self.window // len(logs))
            for log in logs:
                if len(logs) > 1:
                    number = next(a.attempt for a in t.attempts if a.log == log)
                    self.add(f'<div class="e attempt">attempt {number}</div>')
                self.transcript(log, window)
            self.add("</template>")
        self.add("</div></details>")

    def transcript(self, log: Path, budget: int) -> None:
        window = read_window(log, budget)
        results = {e.tool_id: e for e in window.entries if e.kind == "tool_result" and e.tool_id}
        paired: set[str] = set()
        for e in window.entries:
            if e.kind == "tool":
                found = results.get(e.tool_id) if e.tool_id else None
                if found is not None and e.tool_id:
                    paired.add(e.tool_id)
                self.tool(e, found)
            elif e.kind == "tool_result":
                if not (e.tool_id and e.tool_id in paired):
                    self.tool(None, e)
            else:
                self.entry(e, log)

    def tool(self, call: Entry | None, result: Entry | None) -> None:
        name = (call.name if call else None) or (result.name if result else None) or "tool"
        short = _short_input(call.input) if call else "(call not shown)"
        self.add(
            f'<details class="e tool"><summary><b>{escape(name)}</b> '
            f"<code>{escape(short)}</code></summary>"
        )
        if call is not None:
            text = json.dumps(call.input, indent=1, ensure_ascii=False)
            self.add(f'<pre class="in">{escape(_clip(text, self.clip))}</pre>')
        if result is not None:
            css = "out err" if result.is_error else "out"
            self.add(f'<pre class="{css}">{escape(_clip(result.text, self.clip))}</pre>')
        self.add("</details>")

    def entry(self, e: Entry, log: Path) -> None:
        text = escape(_clip(e.text, self.clip))
        if e.kind == "text":
            self.add(f'<div class="e text"><pre>{text}</pre></div>')
        elif e.kind == "thinking":
            self.add(
                '<details class="e thinking"><summary>thinking</summary>'
                f"<pre>{text}</pre></details>"
            )
        elif e.kind == "user":
            self.add(f'<div class="e user"><pre>{text}</pre></div>')
        elif e.kind == "system":
            self.add(f'<div class="e sys">{text}</div>')
        elif e.kind == "error":
            self.add(f'<div class="e err">{text}</div>')
        elif e.kind == "result":
            m = e.meta
            cost = fmt.money(m.get("cost_usd")) if m.get("cost_usd") is not None else "-"
            css = "e result err" if e.is_error else "e result"
            self.add(
                f'<div class="{css}">result: {escape(str(m.get("subtype")))}, '
                f"{escape(str(m.get('num_turns')))} turns, {cost}<pre>{text}</pre></div>"
            )
        elif e.kind == "gap":
            self.add(f'<div class="e gap">… {text} — <a href="{self.href(log)}">full log</a></div>')
        else:
            self.add(f'<div class="e raw"><pre>{text}</pre></div>')


def _short_input(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("command", "file_path", "path", "pattern", "url", "query", "description"):
            if isinstance(value.get(key), str):
                return _clip(" ".join(value[key].split()), 120)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:119] + "…"


def render_html(
    view: RunView, *, out_dir: Path | None = None, redact: Callable[[str], str] = str
) -> str:
    """The report as one HTML document (links to logs relative to ``out_dir``, the
    directory the file will be written to; the run directory by default)."""
    page = _Page(view, out_dir or view.run_dir)
    usage = {t.key: model_usage(t) for t in view.tasks}
    title = f"{view.plan_run_id} — {view.status}"
    page.add(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        # No network: nothing may be fetched, even if an agent's text smuggles a tag in.
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{_asset('report.css')}</style></head>"
        '<body data-filter="all">'
    )
    page.header()
    page.filters()
    for name, section in (
        ("timeline", page.timeline),
        ("graph", page.graph),
        ("costs", lambda: page.costs(usage)),
        ("tasks", page.tasks),
    ):
        page.add(f'<section id="{name}">')
        section()
        page.add("</section>")
    page.add(f"<script>{_asset('report.js')}</script></body></html>\n")
    return redact("".join(page.parts))
