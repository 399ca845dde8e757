"""Reports made from a run directory alone: Markdown, JUnit XML, self-contained HTML.

``write_reports`` is what the runner calls at the end of a pipeline run; ``render``
is what ``claude-pipeline report`` calls. Both read the directory (``rundir.read_run``),
so they work the same on a finished, failed or crashed run, and on a copy of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from claude_runner.errors import RunDirError, UsageError
from claude_runner.redact import Redactor
from claude_runner.reports.rundir import RunView, read_run

FORMATS = ("markdown", "junit", "html")
FILE_NAMES = {"markdown": "report.md", "junit": "report.junit.xml", "html": "report.html"}
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


def parse_formats(text: str) -> tuple[str, ...]:
    """``html,junit`` -> ("html", "junit"); an unknown or empty name is a UsageError."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise UsageError(
            f"unknown report format {', '.join(map(repr, unknown)) or repr(text)}; "
            f"use a comma-separated list of: {', '.join(FORMATS)}"
        )
    return names


def render(
    view: RunView, fmt: str, *, redact: Callable[[str], str], out_dir: Path | None = None
) -> str:
    """One report of ``view`` as text. ``out_dir``: where an HTML file will be written
    (its links to the logs are relative to it)."""
    if fmt == "markdown":
        from claude_runner.reports.markdown import render_markdown  # noqa: PLC0415

        return render_markdown(view, redact=redact)
    if fmt == "junit":
        from claude_runner.reports.junit import render_junit  # noqa: PLC0415

        return render_junit(view, redact=redact)
    if fmt == "html":
        from claude_runner.reports.html import render_html  # noqa: PLC0415

        return render_html(view, out_dir=out_dir, redact=redact)
    raise UsageError(f"unknown report format {fmt!r}; use one of: {', '.join(FORMATS)}")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(
    run_dir: Path, formats: Iterable[str], *, env: Mapping[str, str] | None = None
) -> list[Path]:
    """Write the reports named in ``formats`` into ``run_dir`` (``report.md``,
    ``report.junit.xml``, ``report.html``), and append the Markdown report to
    ``$GITHUB_STEP_SUMMARY`` when that is set: call it once at the end of every
    pipeline run, with the formats of ``--report`` (possibly none). Secrets of ``env``
    are masked. Returns the files written; raises RunDirError when one cannot be."""
    env = os.environ if env is None else env
    wanted = list(dict.fromkeys(formats))
    summary = env.get(STEP_SUMMARY)
    if not wanted and not summary:
        return []
    redact = Redactor.from_env(env)
    view = read_run(run_dir)
    written: list[Path] = []
    try:
        for fmt in wanted:
            path = run_dir / FILE_NAMES[fmt]
            _write(path, render(view, fmt, redact=redact, out_dir=run_dir))
            written.append(path)
        if summary:
            text = render(view, "markdown", redact=redact)
            with open(summary, "a", encoding="utf-8") as f:
                f.write(text)
            written.append(Path(summary))
    except OSError as exc:
        raise RunDirError(f"cannot write a report: {exc}") from exc
    return written
